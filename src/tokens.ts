/**
 * What this extension offers other extensions: interfaces only, so a consumer (and api.ts, which needs
 * API_NAMESPACE) never imports the concrete models.
 */
import { Token } from '@lumino/coreutils';
import type { ISignal } from '@lumino/signaling';
import type { INotebookBinding } from './notebook';
import type { ITurn } from './turns';
import type { IStatus } from './types';

/** The chat of one notebook: its turns, each folded from the server's events. */
export interface ITaskWeaverChat {
  /** The notebook's path, relative to the server root. */
  readonly path: string;
  readonly turns: readonly ITurn[];
  /** The turn being sent, running or stopping, if any. */
  readonly activeTurn: ITurn | null;
  /** True while the chat is read back from the server. */
  readonly loading: boolean;
  /** Why the chat could not be read; empty when it could. */
  readonly error: string;
  /** Turns were added or replaced, a turn started or ended, or `loading` / `error` changed. */
  readonly changed: ISignal<ITaskWeaverChat, void>;
  /** Something shown in this turn changed (items, state, usage, error), streamed text aside. */
  readonly turnChanged: ISignal<ITaskWeaverChat, ITurn>;
  /** The turn's live LLM text grew by a streamed token. */
  readonly streamed: ISignal<ITaskWeaverChat, ITurn>;
}

/** The sidebar: it follows the active notebook and talks to the server extension about it. */
export interface ITaskWeaverSidebar {
  /** The active notebook, the server status, the user's settings or the set of chats changed. */
  readonly changed: ISignal<ITaskWeaverSidebar, void>;
  /** The server's answer to `GET status`; null until it came. */
  readonly status: IStatus | null;
  /** The active notebook and its kernel. */
  readonly binding: INotebookBinding | null;
  /** The active notebook's chat. */
  readonly chat: ITaskWeaverChat | null;
  /**
   * Asks TaskWeaver about the active notebook, as the message box does. Resolves as soon as the turn
   * is on its way: to '' then, or to why it could not be sent (no notebook, no kernel, no endpoint).
   */
  send(message: string): Promise<string>;
  /** Stops the active notebook's running turn, if any. */
  stop(): Promise<void>;
}

export const ITaskWeaverSidebar = new Token<ITaskWeaverSidebar>(
  'taskweaver_lab:ITaskWeaverSidebar',
  'The TaskWeaver sidebar: the chat of the active notebook.'
);

export const PLUGIN_ID = 'taskweaver_lab:plugin';
export const API_NAMESPACE = 'taskweaver_lab';
