import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'taskweaver_lab:plugin',
  description: 'TaskWeaver chat sidebar.',
  autoStart: true,
  activate: (_app: JupyterFrontEnd) => {
    console.debug('taskweaver_lab activated');
  }
};

export default plugin;
