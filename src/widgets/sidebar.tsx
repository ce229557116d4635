import * as React from 'react';
import type { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { ChatPanel } from '../components/chat';
import type { SidebarModel } from '../model';

/** The right-sidebar widget: re-renders the panel whenever the model changes. */
export class TaskWeaverSidebar extends ReactWidget {
  constructor(
    private readonly model: SidebarModel,
    private readonly rendermime: IRenderMimeRegistry
  ) {
    super();
    this.id = 'jp-TaskWeaver-sidebar';
    this.addClass('jp-TaskWeaver-sidebar');
    this.title.caption = 'TaskWeaver';
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => <ChatPanel model={this.model} rendermime={this.rendermime} />}
      </UseSignal>
    );
  }
}
