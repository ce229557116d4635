/**
 * The events websocket of one notebook, part of the API layer (api.ts opens it): parses envelopes and
 * reconnects with backoff. Only Lumino here, no JupyterLab services, so it runs under `node --test`.
 */
import type { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';
import type { IEventEnvelope } from './types';

/** Delays before reconnect attempts; the last one repeats until the server is back. */
export const RECONNECT_MS: readonly number[] = [500, 1000, 2000, 5000];

/** The parts of a browser WebSocket the stream uses. */
export type EventSocket = Pick<WebSocket, 'onopen' | 'onclose' | 'onmessage' | 'close'>;

/** Every event of every turn on one notebook, for as long as it is not disposed. */
export interface IEventStream extends IDisposable {
  /** One parsed envelope per message; malformed messages are dropped. */
  readonly received: ISignal<IEventStream, IEventEnvelope>;
  /** The socket is open again after a drop: events may have been missed, re-read the session. */
  readonly reconnected: ISignal<IEventStream, void>;
}

export class EventStream implements IEventStream {
  /** Opens the first socket now; `open` makes each (re)connection's socket. */
  constructor(
    private readonly open: () => EventSocket,
    private readonly delays: readonly number[] = RECONNECT_MS
  ) {
    this.connect();
  }

  get received(): ISignal<IEventStream, IEventEnvelope> {
    return this._received;
  }
  get reconnected(): ISignal<IEventStream, void> {
    return this._reconnected;
  }
  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    clearTimeout(this._timer);
    this._socket?.close();
    this._socket = null;
    Signal.clearData(this);
  }

  private connect(): void {
    if (this._disposed) {
      return;
    }
    const socket = this.open();
    socket.onmessage = (message: MessageEvent) => {
      const envelope = parseEnvelope(message.data);
      if (envelope) {
        this._received.emit(envelope);
      }
    };
    socket.onopen = () => {
      const wasReconnect = this._attempts > 0;
      this._attempts = 0;
      if (wasReconnect) {
        this._reconnected.emit();
      }
    };
    socket.onclose = () => this.scheduleReconnect();
    this._socket = socket;
  }

  private scheduleReconnect(): void {
    if (this._disposed) {
      return;
    }
    const delay = this.delays[Math.min(this._attempts, this.delays.length - 1)];
    this._attempts += 1;
    this._timer = setTimeout(() => this.connect(), delay);
  }

  private _socket: EventSocket | null = null;
  private _attempts = 0;
  private _timer: ReturnType<typeof setTimeout> | undefined = undefined;
  private _disposed = false;
  private _received = new Signal<IEventStream, IEventEnvelope>(this);
  private _reconnected = new Signal<IEventStream, void>(this);
}

/** An envelope from a socket message, or null for anything else (binary, not JSON, no event kind). */
export function parseEnvelope(data: unknown): IEventEnvelope | null {
  if (typeof data !== 'string') {
    return null;
  }
  try {
    const parsed = JSON.parse(data) as IEventEnvelope;
    return parsed && parsed.event && typeof parsed.event.kind === 'string' ? parsed : null;
  } catch {
    return null;
  }
}
