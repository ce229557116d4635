/**
 * The domain state of the sidebar, with Lumino signals (no React, no view state here).
 * SidebarModel follows the active notebook; one ChatModel per notebook path holds its turns and
 * listens to its events stream (api.ts), so a turn keeps recording while the user works in another tab.
 * Signals are fine-grained so a streamed token re-renders one line, not the panel.
 */
import { ISignal, Signal } from '@lumino/signaling';
import { ApiError, TaskWeaverApi } from './api';
import type { IEventStream } from './events';
import { INotebookBinding, NotebookHost } from './notebook';
import type { ICellTarget } from './present';
import type { ITaskWeaverChat, ITaskWeaverSidebar } from './tokens';
import {
  applyEvent,
  isActive,
  ITurn,
  IApprovalItem,
  newTurn,
  turnsFromHistory
} from './turns';
import type {
  ApprovalAction,
  ApprovalPolicy,
  ICellEvent,
  IEventEnvelope,
  IStatus,
  ITurnRequest,
  IUserSettings
} from './types';

export const DEFAULT_SETTINGS: IUserSettings = {
  approval: 'auto',
  plannerModel: '',
  codeGeneratorModel: '',
  baseUrl: ''
};

/** The chat of one notebook. */
export class ChatModel implements ITaskWeaverChat {
  constructor(
    readonly path: string,
    private readonly api: TaskWeaverApi,
    private readonly host: NotebookHost
  ) {}

  get changed(): ISignal<this, void> {
    return this._changed;
  }
  get turnChanged(): ISignal<this, ITurn> {
    return this._turnChanged;
  }
  get streamed(): ISignal<this, ITurn> {
    return this._streamed;
  }
  get turns(): readonly ITurn[] {
    return this._turns;
  }
  get loading(): boolean {
    return this._loading;
  }
  get error(): string {
    return this._error;
  }
  get activeTurn(): ITurn | null {
    return this._turns.find(isActive) ?? null;
  }
  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Listens for events, then restores the chat from the notebook record (server side). */
  async start(): Promise<void> {
    this._events = this.api.events(this.path);
    this._events.received.connect((_, envelope) => this.onEnvelope(envelope), this);
    this._events.reconnected.connect(() => void this.refresh(), this);
    await this.refresh();
  }

  async refresh(): Promise<void> {
    this._loading = true;
    this.emitChanged();
    try {
      const snapshot = await this.api.getSession(this.path);
      if (!this.activeTurn) {
        this._turns = turnsFromHistory(snapshot.events, snapshot.session_id);
      }
      this._error = '';
    } catch (error) {
      this._error = messageOf(error);
    }
    this._loading = false;
    this.emitChanged();
  }

  async send(request: ITurnRequest): Promise<void> {
    const turn = newTurn(`local-${++this._localCount}`, request.message, 'sending');
    this._turns.push(turn);
    this.emitChanged();
    const wasActive = isActive(turn);
    try {
      const accepted = await this.api.startTurn(request);
      this.adopt(turn, accepted.turn_id);
      this.record = accepted.record;
      if (turn.state === 'sending') {
        turn.state = 'running';
      }
      if (this._stopRequested.delete(turn)) {
        await this.stop(turn);
      }
    } catch (error) {
      turn.state = 'failed';
      turn.error = messageOf(error);
    }
    this.turnUpdated(turn, wasActive);
  }

  /** Stop works from the moment the message is accepted; earlier clicks are remembered. */
  async stop(turn: ITurn): Promise<void> {
    if (!isActive(turn)) {
      return;
    }
    turn.state = 'stopping';
    this.turnUpdated(turn, true);
    if (turn.id.startsWith('local-')) {
      this._stopRequested.add(turn);
      return;
    }
    try {
      await this.api.stopTurn(turn.id);
    } catch (error) {
      turn.error = messageOf(error);
      this.turnUpdated(turn, isActive(turn));
    }
  }

  async approve(turn: ITurn, item: IApprovalItem, action: ApprovalAction, code?: string): Promise<void> {
    item.resolved = action;
    this.turnUpdated(turn, isActive(turn));
    try {
      await this.api.approve(turn.id, action, action === 'edit' ? code : undefined);
    } catch (error) {
      item.resolved = null;
      turn.error = messageOf(error);
      this.turnUpdated(turn, isActive(turn));
    }
  }

  /** "Save as example" under an answer: the files written, or throws the server's one-sentence refusal. */
  async saveExample(turn: ITurn): Promise<string[]> {
    const saved = await this.api.saveExample(this.path, turn.userText);
    return saved.saved;
  }

  /** Scrolls this notebook to the generated cell that computed a figure and selects it; false when it is gone. */
  showCell(target: ICellTarget): Promise<boolean> {
    return this.host.showCell(this.path, target);
  }

  /** How the server records the current turn: "rtc", "frontend" or "file". */
  record: string = '';

  dispose(): void {
    this._disposed = true;
    this._events?.dispose();
    this._events = null;
    Signal.clearData(this);
  }

  /** Folds one event into its turn and tells only the views that show what changed. */
  private onEnvelope(envelope: IEventEnvelope): void {
    const event = envelope.event;
    const turn = this.turnFor(envelope.turn_id);
    turn.sessionId = envelope.session_id || turn.sessionId;
    if (event.kind === 'cell') {
      this.queueCell(event, turn);
      return;
    }
    const wasActive = isActive(turn);
    applyEvent(turn, event);
    if (event.kind === 'delta') {
      this.emit(this._streamed, turn);
    } else {
      this.turnUpdated(turn, wasActive);
    }
  }

  /** The turn an event belongs to: known, the one still being sent, or a new one (e.g. the magic's). */
  private turnFor(turnId: string): ITurn {
    const known = this._turns.find(turn => turn.id === turnId);
    if (known) {
      return known;
    }
    const sending = this._turns.find(turn => turn.id.startsWith('local-') && isActive(turn));
    if (sending) {
      this.adopt(sending, turnId);
      return sending;
    }
    const turn = newTurn(turnId, '', 'running');
    this._turns.push(turn);
    this.emitChanged();
    return turn;
  }

  /** The server's id replaces the local one; the list re-renders now, before the turn shows anything. */
  private adopt(turn: ITurn, turnId: string): void {
    if (turn.id.startsWith('local-')) {
      turn.id = turnId;
      this.emitChanged();
    }
  }

  /** Inserts cells one after the other, in arrival order (record mode "frontend"). */
  private queueCell(event: ICellEvent, turn: ITurn): void {
    if (!event.insert) {
      return;
    }
    this._cellQueue = this._cellQueue.then(async () => {
      const inserted = await this.host
        .insertCell(this.path, event.cell, event.after_cell_id)
        .catch(() => false);
      if (!inserted) {
        turn.error = `Could not add a generated cell to ${this.path}: open the notebook to record it.`;
        this.turnUpdated(turn, isActive(turn));
      }
    });
  }

  /** A turn changed; the list (and the Send/Stop button) only re-renders when it started or ended. */
  private turnUpdated(turn: ITurn, wasActive: boolean): void {
    if (isActive(turn) !== wasActive) {
      this.emitChanged();
    }
    this.emit(this._turnChanged, turn);
  }

  private emitChanged(): void {
    this.emit(this._changed, undefined);
  }

  private emit<T>(signal: Signal<this, T>, args: T): void {
    if (!this._disposed) {
      signal.emit(args);
    }
  }

  private _turns: ITurn[] = [];
  private _loading = false;
  private _error = '';
  private _localCount = 0;
  private _events: IEventStream | null = null;
  private _disposed = false;
  private _stopRequested = new Set<ITurn>();
  private _cellQueue: Promise<void> = Promise.resolve();
  private _changed = new Signal<this, void>(this);
  private _turnChanged = new Signal<this, ITurn>(this);
  private _streamed = new Signal<this, ITurn>(this);
}

/** The last "Test connection" of the sidebar: idle (never run, or the settings changed since), testing, or its line. */
export interface IConnectionState {
  state: 'idle' | 'testing' | 'ok' | 'failed';
  text: string;
}

/** What the sidebar shows: the active notebook's chat, the server status, the user's settings. */
export class SidebarModel implements ITaskWeaverSidebar {
  constructor(
    readonly api: TaskWeaverApi,
    readonly host: NotebookHost,
    private readonly saveSetting: (key: keyof IUserSettings, value: string) => Promise<void>
  ) {
    host.changed.connect(this.onNotebookChanged, this);
    host.closed.connect((_, path) => this.dropChatIfIdle(path));
    this.onNotebookChanged();
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }
  get status(): IStatus | null {
    return this._status;
  }
  get statusError(): string {
    return this._statusError;
  }
  /** What the admin should know and the user should see: a sandbox that cannot work, plugins that failed. */
  get serverWarnings(): string[] {
    const status = this._status;
    if (!status) {
      return [];
    }
    const warnings = (status.load_errors ?? []).map(problem => `Not loaded: ${problem}`);
    if (status.sandbox_error) {
      warnings.unshift(`Turns are refused: this server must sandbox agent code but cannot (${status.sandbox_error}).`);
    }
    return warnings;
  }
  get binding(): INotebookBinding | null {
    return this._binding;
  }
  get chat(): ChatModel | null {
    return this._binding ? this._chats.get(this._binding.path) ?? null : null;
  }
  get settings(): IUserSettings {
    return this._settings;
  }
  get connection(): IConnectionState {
    return this._connection;
  }
  /** True when the panel should show how to configure an LLM endpoint instead of the chat box. */
  get needsConfiguration(): boolean {
    return this._status !== null && !this.endpointReady;
  }

  /** The server has an endpoint, or the user picked their own and the server accepts that. */
  get endpointReady(): boolean {
    const status = this._status;
    const ownEndpoint = !!this._settings.baseUrl && status?.user_base_url !== false;
    return !!status && (status.configured || ownEndpoint);
  }

  /** The models this user's turns use: their settings, else the server's configuration. */
  get models(): { planner: string; codeGenerator: string; ownEndpoint: string } | null {
    if (!this._status || !this.endpointReady) {
      return null;
    }
    const { plannerModel, codeGeneratorModel, baseUrl } = this._settings;
    return {
      planner: plannerModel || this._status.models.planner,
      codeGenerator: codeGeneratorModel || this._status.models.code_generator,
      ownEndpoint: baseUrl
    };
  }

  async refreshStatus(): Promise<void> {
    try {
      this._status = await this.api.getStatus();
      this._statusError = '';
    } catch (error) {
      this._statusError = messageOf(error);
    }
    this.emit();
  }

  updateSettings(settings: Partial<IUserSettings>): void {
    const before = this.overrides();
    this._settings = { ...this._settings, ...settings };
    if (JSON.stringify(before) !== JSON.stringify(this.overrides())) {
      this._connection = { state: 'idle', text: '' }; // it said what worked with the previous settings
    }
    this.emit();
  }

  /** "Test connection": asks the server to try the endpoint the user's turns would use, with their settings now. */
  async testConnection(): Promise<void> {
    if (this._connection.state === 'testing') {
      return;
    }
    const sent = JSON.stringify(this.overrides());
    this._connection = { state: 'testing', text: 'Testing the LLM endpoint…' };
    this.emit();
    let result: IConnectionState;
    try {
      const check = await this.api.testConnection(this.overrides().overrides ?? {});
      result = { state: check.ok ? 'ok' : 'failed', text: check.summary };
    } catch (error) {
      result = { state: 'failed', text: messageOf(error) };
    }
    // settings changed while testing: the answer is about the old ones
    this._connection = sent === JSON.stringify(this.overrides()) ? result : { state: 'idle', text: '' };
    this.emit();
  }

  /** The approval switch; persisted in the user's settings. */
  async setApproval(policy: ApprovalPolicy): Promise<void> {
    this.updateSettings({ approval: policy });
    await this.saveSetting('approval', policy).catch(() => undefined);
  }

  async send(message: string): Promise<string> {
    const text = message.trim();
    if (!text) {
      return 'The message is empty.';
    }
    const request = await this.requestFor(text);
    if (typeof request === 'string') {
      return request;
    }
    // The chat shows the turn from here on and reports its own failures: no need to wait for the POST.
    void this.chatFor(request.path).send(request);
    return '';
  }

  async stop(): Promise<void> {
    const turn = this.chat?.activeTurn;
    if (turn && this.chat) {
      await this.chat.stop(turn);
    }
  }

  dispose(): void {
    this._chats.forEach(chat => chat.dispose());
    this._chats.clear();
    Signal.clearData(this);
  }

  /** Captures path + kernel id now (never later), or says what is missing. */
  private async requestFor(message: string): Promise<ITurnRequest | string> {
    if (!this.endpointReady) {
      await this.refreshStatus();
      if (!this.endpointReady) {
        return this._statusError || 'No LLM endpoint is configured yet (see above).';
      }
    }
    const binding = await this.host.currentWithKernel();
    if (!binding) {
      return 'Open a notebook first: TaskWeaver runs code in the notebook\'s own kernel.';
    }
    if (!binding.kernelId) {
      return `Start a kernel for ${binding.path} first (Kernel menu > Change Kernel).`;
    }
    return {
      path: binding.path,
      kernel_id: binding.kernelId,
      message,
      approval: this._settings.approval,
      record: this.host.isOpen(binding.path) ? 'frontend' : 'server',
      ...this.overrides()
    };
  }

  private overrides(): Pick<ITurnRequest, 'overrides'> {
    const { plannerModel, codeGeneratorModel, baseUrl } = this._settings;
    const overrides: NonNullable<ITurnRequest['overrides']> = {};
    if (plannerModel) {
      overrides.planner_model = plannerModel;
    }
    if (codeGeneratorModel) {
      overrides.code_generator_model = codeGeneratorModel;
    }
    if (baseUrl) {
      overrides.base_url = baseUrl;
    }
    return Object.keys(overrides).length ? { overrides } : {};
  }

  private chatFor(path: string): ChatModel {
    let chat = this._chats.get(path);
    if (!chat) {
      chat = new ChatModel(path, this.api, this.host);
      this._chats.set(path, chat);
      void chat.start();
      this.emit();
    }
    return chat;
  }

  private onNotebookChanged(): void {
    this._binding = this.host.current();
    if (this._binding) {
      this.chatFor(this._binding.path);
    }
    this.emit();
  }

  private dropChatIfIdle(path: string): void {
    const chat = this._chats.get(path);
    if (chat && !chat.activeTurn && !this.host.isOpen(path)) {
      chat.dispose();
      this._chats.delete(path);
      this.emit();
    }
  }

  private emit(): void {
    this._changed.emit();
  }

  private _status: IStatus | null = null;
  private _statusError = '';
  private _binding: INotebookBinding | null = null;
  private _settings: IUserSettings = { ...DEFAULT_SETTINGS };
  private _connection: IConnectionState = { state: 'idle', text: '' };
  private _chats = new Map<string, ChatModel>();
  private _changed = new Signal<this, void>(this);
}

function messageOf(error: unknown): string {
  if (error instanceof ApiError || error instanceof Error) {
    return error.message;
  }
  return String(error);
}
