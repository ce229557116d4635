/** The notebooks the sidebar talks about: which one is active, its kernel, inserting cells. */
import type * as nbformat from '@jupyterlab/nbformat';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { Contents } from '@jupyterlab/services';
import { PathExt } from '@jupyterlab/coreutils';
import { ISignal, Signal } from '@lumino/signaling';
import { insertionIndex } from './cells';
import { cellMatches, ICellTarget } from './present';

/** The metadata key of generated cells (taskweaver_lab/record_io.py META). */
export const CELL_META = 'taskweaver_lab';

export interface INotebookBinding {
  path: string;
  kernelId: string | null;
}

export class NotebookHost {
  constructor(
    private readonly tracker: INotebookTracker,
    private readonly contents: Contents.IManager,
    private readonly activate: (panel: NotebookPanel) => void = () => undefined
  ) {
    tracker.currentChanged.connect(this.onCurrentChanged, this);
    tracker.widgetAdded.connect((_, panel) => this.watchPanel(panel));
    tracker.forEach(panel => this.watchPanel(panel));
  }

  /** Emits when the active notebook, its path or its kernel changes. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emits the path of a notebook whose panel was closed. */
  get closed(): ISignal<this, string> {
    return this._closed;
  }

  current(): INotebookBinding | null {
    const panel = this.tracker.currentWidget;
    return panel ? bindingOf(panel) : null;
  }

  isOpen(path: string): boolean {
    return this.findPanel(path) !== null;
  }

  /** Waits for the active notebook's kernel, starting none: the user chooses kernels. */
  async currentWithKernel(): Promise<INotebookBinding | null> {
    const panel = this.tracker.currentWidget;
    if (!panel) {
      return null;
    }
    await panel.sessionContext.ready;
    return bindingOf(panel);
  }

  /**
   * Inserts a cell (source, outputs, metadata, id) into the open notebook at `path` and saves it:
   * right below the cell `afterCellId` when there is one (a magic turn), else at the end.
   */
  async insertCell(path: string, cell: nbformat.ICell, afterCellId?: string): Promise<boolean> {
    const panel = this.findPanel(path);
    const model = panel?.content.model;
    if (!panel || !model) {
      return false;
    }
    const shared = model.sharedModel;
    const index = insertionIndex(shared.cells.map(existing => existing.id), afterCellId);
    shared.insertCell(index, toSharedCell(cell));
    await panel.context.save();
    return true;
  }

  /**
   * Brings the notebook at `path` forward, scrolls to the generated code cell `target` names and makes it
   * the active, only selected cell. False when the notebook is closed or no such cell is left.
   */
  async showCell(path: string, target: ICellTarget): Promise<boolean> {
    const panel = this.findPanel(path);
    if (!panel) {
      return false;
    }
    const notebook = panel.content;
    const cell = [...notebook.widgets]
      .reverse()
      .find(candidate => candidate.model.type === 'code' && cellMatches(candidate.model.getMetadata(CELL_META), target));
    if (!cell) {
      return false;
    }
    this.activate(panel);
    notebook.deselectAll();
    await notebook.scrollToCell(cell, 'center');
    notebook.activeCellIndex = notebook.widgets.indexOf(cell);
    return true;
  }

  /** A download URL for an artifact path (relative paths are relative to the notebook's folder). */
  async downloadUrl(notebookPath: string, artifact: string): Promise<string | null> {
    if (artifact.startsWith('/') || /^[a-z]+:\/\//i.test(artifact)) {
      return null;
    }
    const path = PathExt.join(PathExt.dirname(notebookPath), artifact);
    return this.contents.getDownloadUrl(path);
  }

  private findPanel(path: string): NotebookPanel | null {
    return this.tracker.find(panel => panel.context.path === path) ?? null;
  }

  private watchPanel(panel: NotebookPanel): void {
    const path = panel.context.path;
    panel.sessionContext.kernelChanged.connect(this.emitIfCurrent(panel), this);
    panel.context.pathChanged.connect(this.emitIfCurrent(panel), this);
    panel.disposed.connect(() => this._closed.emit(path));
  }

  private emitIfCurrent(panel: NotebookPanel): () => void {
    return () => {
      if (this.tracker.currentWidget === panel) {
        this._changed.emit();
      }
    };
  }

  private onCurrentChanged(): void {
    this._changed.emit();
  }

  private _changed = new Signal<this, void>(this);
  private _closed = new Signal<this, string>(this);
}

function bindingOf(panel: NotebookPanel): INotebookBinding {
  return {
    path: panel.context.path,
    kernelId: panel.sessionContext.session?.kernel?.id ?? null
  };
}

function toSharedCell(cell: nbformat.ICell): nbformat.ICell {
  const copy = JSON.parse(JSON.stringify(cell)) as nbformat.ICell;
  if (Array.isArray(copy.source)) {
    copy.source = copy.source.join('');
  }
  return copy;
}
