/**
 * The message box's view model: the text being typed, why the last message was not sent, and whether
 * the box shows Send or Stop. Kept out of SidebarModel so typing re-renders the message box only.
 */
import { ISignal, Signal } from '@lumino/signaling';
import type { ChatModel, SidebarModel } from './model';

export class ComposerModel {
  constructor(private readonly sidebar: SidebarModel) {
    // A "why not sent" about one notebook is stale once another one (or another kernel) is active.
    sidebar.host.changed.connect(() => this.setError(''), this);
    sidebar.changed.connect(this.followChat, this);
    this.followChat();
  }

  /** Text, error or busy changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }
  get text(): string {
    return this._text;
  }
  set text(value: string) {
    this._text = value;
    this._changed.emit();
  }
  /** Why the last message was not sent; empty when it was. */
  get error(): string {
    return this._error;
  }
  /** A turn of the active notebook is being sent, running or stopping: the box offers Stop. */
  get busy(): boolean {
    return this._busy;
  }
  /** No notebook to talk about, or no LLM endpoint yet. */
  get disabled(): boolean {
    return !this.sidebar.binding || this.sidebar.needsConfiguration;
  }

  /** Sends the typed message; it stays in the box (with the reason shown) when it cannot be sent. */
  async send(): Promise<void> {
    const message = this._text.trim();
    if (!message) {
      return;
    }
    const problem = await this.sidebar.send(message);
    if (!problem) {
      this._text = '';
    }
    this.setError(problem);
  }

  stop(): Promise<void> {
    return this.sidebar.stop();
  }

  dispose(): void {
    Signal.clearData(this);
  }

  /** Watches the active notebook's chat, whose turns start and end without the sidebar changing. */
  private followChat(): void {
    const chat = this.sidebar.chat;
    if (chat !== this._chat) {
      this._chat?.changed.disconnect(this.updateBusy, this);
      chat?.changed.connect(this.updateBusy, this);
      this._chat = chat;
    }
    this.updateBusy();
  }

  private updateBusy(): void {
    const busy = this._chat?.activeTurn != null;
    if (busy !== this._busy) {
      this._busy = busy;
      this._changed.emit();
    }
  }

  private setError(error: string): void {
    this._error = error;
    this._changed.emit();
  }

  private _chat: ChatModel | null = null;
  private _text = '';
  private _error = '';
  private _busy = false;
  private _changed = new Signal<this, void>(this);
}
