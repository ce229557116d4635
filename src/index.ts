import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { TaskWeaverApi } from './api';
import { taskweaverIcon } from './icon';
import { DEFAULT_SETTINGS, SidebarModel } from './model';
import { NotebookHost } from './notebook';
import { ITaskWeaverSidebar, PLUGIN_ID } from './tokens';
import type { ApprovalPolicy, IUserSettings } from './types';
import { TaskWeaverSidebar } from './widgets/sidebar';

export const OPEN_COMMAND = 'taskweaver:open';

const plugin: JupyterFrontEndPlugin<ITaskWeaverSidebar> = {
  id: PLUGIN_ID,
  description: 'TaskWeaver chat sidebar: plans, verified code and results in the notebook\'s own kernel.',
  autoStart: true,
  requires: [INotebookTracker, IRenderMimeRegistry],
  optional: [ISettingRegistry, ICommandPalette, ILayoutRestorer],
  provides: ITaskWeaverSidebar,
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    rendermime: IRenderMimeRegistry,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const host = new NotebookHost(tracker, app.serviceManager.contents, panel => app.shell.activateById(panel.id));
    const save = async (key: keyof IUserSettings, value: string) => {
      await settingRegistry?.set(PLUGIN_ID, key, value);
    };
    const model = new SidebarModel(new TaskWeaverApi(), host, save);
    const sidebar = new TaskWeaverSidebar(model, rendermime);
    sidebar.title.icon = taskweaverIcon;
    app.shell.add(sidebar, 'right', { rank: 600 });
    restorer?.add(sidebar, 'taskweaver-sidebar'); // the sidebar reopens after a reload as the user left it
    addOpenCommand(app, sidebar.id, palette);
    void model.refreshStatus();
    if (settingRegistry) {
      void loadSettings(settingRegistry, model);
    }
    return model;
  }
};

function addOpenCommand(app: JupyterFrontEnd, sidebarId: string, palette: ICommandPalette | null): void {
  app.commands.addCommand(OPEN_COMMAND, {
    label: 'Open the TaskWeaver chat',
    icon: taskweaverIcon,
    execute: () => app.shell.activateById(sidebarId)
  });
  palette?.addItem({ command: OPEN_COMMAND, category: 'TaskWeaver' });
}

async function loadSettings(registry: ISettingRegistry, model: SidebarModel): Promise<void> {
  try {
    const settings = await registry.load(PLUGIN_ID);
    const apply = () => model.updateSettings(readSettings(settings));
    settings.changed.connect(apply);
    apply();
  } catch (error) {
    console.warn('taskweaver_lab: settings unavailable, using defaults', error);
  }
}

function readSettings(settings: ISettingRegistry.ISettings): IUserSettings {
  const text = (key: keyof IUserSettings) => {
    const value = settings.get(key).composite;
    return typeof value === 'string' ? value : String(DEFAULT_SETTINGS[key]);
  };
  return {
    approval: (text('approval') === 'approve' ? 'approve' : 'auto') as ApprovalPolicy,
    plannerModel: text('plannerModel'),
    codeGeneratorModel: text('codeGeneratorModel'),
    baseUrl: text('baseUrl')
  };
}

export default plugin;
export { ITaskWeaverSidebar } from './tokens';
export type { ITaskWeaverChat } from './tokens';
