import * as React from 'react';
import type { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { ChatPanel } from '../components/chat';
import type { SidebarModel } from '../model';
import { ComposerModel } from '../viewmodel';

/** The right-sidebar widget: re-renders the panel when the sidebar changes (parts follow their own signals). */
export class TaskWeaverSidebar extends ReactWidget {
  constructor(
    private readonly model: SidebarModel,
    private readonly rendermime: IRenderMimeRegistry
  ) {
    super();
    this.id = 'jp-TaskWeaver-sidebar';
    this.addClass('jp-TaskWeaver-sidebar');
    this.title.caption = 'TaskWeaver';
    this.composer = new ComposerModel(model);
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => <ChatPanel model={this.model} composer={this.composer} rendermime={this.rendermime} />}
      </UseSignal>
    );
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.composer.dispose();
    super.dispose();
  }

  private readonly composer: ComposerModel;
}
