/**
 * The API layer: REST and the events websocket of the server extension, through JupyterLab's
 * ServerConnection (base URL, token, XSRF). Models above it never touch sockets or URLs.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { EventStream, IEventStream } from './events';
import { API_NAMESPACE } from './tokens';
import type {
  ApprovalAction,
  IConnectionCheck,
  ISessionSnapshot,
  IStatus,
  ITurnAccepted,
  ITurnRequest
} from './types';

export class ApiError extends Error {}

/** `POST examples`: the API paths of the example files written, and their folder. */
export interface ISavedExample {
  saved: string[];
  folder: string;
}

export class TaskWeaverApi {
  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  getStatus(): Promise<IStatus> {
    return this.request<IStatus>('status');
  }

  getSession(path: string): Promise<ISessionSnapshot> {
    return this.request<ISessionSnapshot>(`sessions?path=${encodeURIComponent(path)}`);
  }

  startTurn(body: ITurnRequest): Promise<ITurnAccepted> {
    return this.request<ITurnAccepted>('turns', 'POST', body);
  }

  stopTurn(turnId: string): Promise<unknown> {
    return this.request(`turns/${encodeURIComponent(turnId)}/stop`, 'POST', {});
  }

  approve(turnId: string, action: ApprovalAction, code?: string): Promise<unknown> {
    const body = code === undefined ? { action } : { action, code };
    return this.request(`turns/${encodeURIComponent(turnId)}/approve`, 'POST', body);
  }

  /** Saves the round of `path` whose user message is `message` as TaskWeaver example YAMLs (next to the notebook). */
  saveExample(path: string, message: string): Promise<ISavedExample> {
    return this.request<ISavedExample>('examples', 'POST', { path, message });
  }

  /** "Test connection": the endpoint the user's turns would use, with these overrides (the admin's limits apply). */
  testConnection(overrides: ITurnRequest['overrides'] = {}): Promise<IConnectionCheck> {
    return this.request<IConnectionCheck>('connection', 'POST', { overrides });
  }

  /** The events of every turn on `path` (sidebar and magic), reconnecting until disposed. */
  events(path: string): IEventStream {
    return new EventStream(() => new this.settings.WebSocket(this.eventsUrl(path)));
  }

  /** `events?path=...`; the token is appended the way JupyterLab's own sockets do it. */
  eventsUrl(path: string): string {
    let url = URLExt.join(this.settings.wsUrl, API_NAMESPACE, 'events');
    url += `?path=${encodeURIComponent(path)}`;
    if (this.settings.appendToken && this.settings.token) {
      url += `&token=${encodeURIComponent(this.settings.token)}`;
    }
    return url;
  }

  private async request<T>(endpoint: string, method = 'GET', body?: unknown): Promise<T> {
    const url = URLExt.join(this.settings.baseUrl, API_NAMESPACE, endpoint);
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (error) {
      throw new ApiError(`The TaskWeaver server extension is unreachable: ${String(error)}`);
    }
    const data = await readJson(response);
    if (!response.ok) {
      throw new ApiError(errorMessage(data, response));
    }
    return data as T;
  }
}

async function readJson(response: Response): Promise<unknown> {
  const text = await response.text();
  if (!text) {
    return {};
  }
  try {
    return JSON.parse(text);
  } catch {
    return {}; // an HTML error page (e.g. a server without this extension): errorMessage says what it means
  }
}

function errorMessage(data: unknown, response: Response): string {
  const error = (data as { error?: unknown; message?: unknown } | null) ?? {};
  if (typeof error.error === 'string') {
    return error.error;
  }
  if (typeof error.message === 'string') {
    return error.message;
  }
  if (response.status === 404) {
    return 'The taskweaver_lab server extension is not enabled (404). Run `jupyter server extension enable taskweaver_lab` and restart.';
  }
  return `Request failed: ${response.status} ${response.statusText}`;
}
