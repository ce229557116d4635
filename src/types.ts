/**
 * The wire vocabulary: a mirror of taskweaver_lab/steps.py (`Step.to_json()`)
 * plus the protocol-only kinds of docs/architecture.md ("Server <-> sidebar protocol").
 *
 * Kept honest by tests/test_wire_contract.py: it records one real example of every message in
 * tests/golden/ and generates src/__tests__/wire.golden.ts, whose typed literals `jlpm test` compiles.
 * A field is required here exactly when Python always sends it.
 */
import type * as nbformat from '@jupyterlab/nbformat';

export type Role = 'planner' | 'code_generator';
export type StopReason =
  | 'InProcess'
  | 'Completed'
  | 'Clarification'
  | 'AdditionalInformation'
  | 'SecurityRisks'
  | 'TaskFailure';
export type ApprovalPolicy = 'auto' | 'approve';
export type ApprovalAction = 'run' | 'skip' | 'edit';
/** Who started a turn: the chat sidebar or a `%%taskweaver` cell. */
export type TurnOrigin = 'sidebar' | 'magic';
/** Where a turn's cells are recorded; "frontend": the sidebar inserts them into the open notebook. */
export type RecordMode = 'rtc' | 'frontend' | 'file';

export interface IUserStep {
  kind: 'user';
  text: string;
  round: number;
}

export interface IPlanStep {
  kind: 'plan';
  message: string;
  send_to: 'CodeInterpreter' | 'User';
  plan: string[];
  init_plan: string[];
  current_step: number;
  stop: StopReason;
  reasoning: string;
  round: number;
}

export interface IDraftStep {
  kind: 'draft';
  thought: string;
  code: string;
  reply_type: 'python' | 'text';
  attempt: number;
  step: number;
  round: number;
}

export interface IViolation {
  rule: string;
  line: number;
  message: string;
}

export interface IVerdictStep {
  kind: 'verdict';
  ok: boolean;
  violations: IViolation[];
  checked_source: string;
  attempt: number;
}

export interface IExecutionStep {
  kind: 'execution';
  ok: boolean;
  code: string;
  outputs: nbformat.IOutput[];
  summary: string;
  error: string;
  artifacts: string[];
  execution_count: number | null;
  duration_s: number;
  attempt: number;
  step: number;
  round: number;
  interrupted: boolean;
  /** False for code that ran without passing the verifier (e.g. a user's edit in approval mode). */
  verified: boolean;
}

/** Where a figure of an answer came from: the generated cell that printed it, or the user's message. */
export interface IFigureSource {
  figure: string;
  origin: 'cell' | 'user';
  round: number;
  step: number;
  attempt: number;
  execution_count: number | null;
}

export interface IAnswerStep {
  kind: 'answer';
  text: string;
  is_question: boolean;
  stop: StopReason;
  round: number;
  /** Each figure of the text and where it was computed. */
  sources: IFigureSource[];
  /** Figures no code of the round printed (the text marks them "not computed"). */
  ungrounded: string[];
}

export interface ILLMCallStep {
  kind: 'llm_call';
  role: Role;
  model: string;
  prompt_tokens: number;
  completion_tokens: number;
  latency_s: number;
  cached_tokens: number;
  retries: number;
}

export interface IDeltaStep {
  kind: 'delta';
  role: Role;
  text: string;
}

export interface INoticeStep {
  kind: 'notice';
  level: 'info' | 'warning' | 'error';
  text: string;
}

/** steps.py Usage, as sent in `turn` events. */
export interface IUsage {
  calls: number;
  prompt_tokens: number;
  completion_tokens: number;
  latency_s: number;
  /** LLM calls per role. */
  by_role: Record<string, number>;
}

export interface ITurnStartedEvent {
  kind: 'turn';
  state: 'started';
  origin: TurnOrigin;
  record: RecordMode;
}

export interface ITurnEndedEvent {
  kind: 'turn';
  state: 'finished' | 'failed';
  /** Only when the turn failed. */
  error?: string;
  usage: IUsage;
}

export type ITurnEvent = ITurnStartedEvent | ITurnEndedEvent;

export interface IApprovalEvent {
  kind: 'approval';
  draft: IDraftStep;
  verdict: IVerdictStep;
}

export interface ICellEvent {
  kind: 'cell';
  cell: nbformat.ICell;
  /** True when the sidebar must insert the cell itself (record mode "frontend"). */
  insert: boolean;
  /** A magic turn's cells go right below this cell (the %%taskweaver cell, then the turn's previous cell). */
  after_cell_id?: string;
}

export type Step =
  | IUserStep
  | IPlanStep
  | IDraftStep
  | IVerdictStep
  | IExecutionStep
  | IAnswerStep
  | ILLMCallStep
  | IDeltaStep
  | INoticeStep;

export type ChatEvent = Step | ITurnEvent | IApprovalEvent | ICellEvent;

/** One websocket message. */
export interface IEventEnvelope {
  turn_id: string;
  session_id: string;
  path: string;
  event: ChatEvent;
}

export interface IStatus {
  configured: boolean;
  help: string;
  models: { planner: string; code_generator: string };
  rtc: boolean;
  approval: ApprovalPolicy;
  /** False when the admin does not let users pick their own LLM endpoint. */
  user_base_url: boolean;
  /** Model names users may pick; empty: any. */
  allowed_models: string[];
  /** "landlock" when agent code only runs in sandboxed kernels. */
  sandbox: 'none' | 'landlock';
  /** The kernelspec display name to switch to when sandbox is "landlock". */
  sandbox_kernel?: string;
  /** Why this machine cannot sandbox (every turn is refused until an admin fixes it). */
  sandbox_error?: string;
  /** Plugins or examples that failed to load (the rest work). */
  load_errors: string[];
}

export interface ISessionSnapshot {
  session_id: string;
  path: string;
  events: ChatEvent[];
  busy: boolean;
  /** The turn running on this notebook, if any. */
  turn_id: string | null;
}

/** Per-user choices from the Settings Editor; never secrets. */
export interface IUserSettings {
  approval: ApprovalPolicy;
  plannerModel: string;
  codeGeneratorModel: string;
  baseUrl: string;
}

export interface ITurnRequest {
  path: string;
  kernel_id: string;
  message: string;
  approval?: ApprovalPolicy;
  record?: 'frontend' | 'server';
  /** Optional per-user overrides from the settings; absent when empty. */
  overrides?: { planner_model?: string; code_generator_model?: string; base_url?: string };
}

/** `POST connection`: what works on the endpoint the user's turns would use ("Test connection"). */
export interface IConnectionCheck {
  ok: boolean;
  endpoint: string;
  models: string[];
  models_error: string;
  /** The response_format the endpoint takes: json_schema, json_object or text ("" when it did not answer). */
  json_mode: string;
  error: string;
  /** One line for the sidebar: what works, or why it does not. */
  summary: string;
}

export interface ITurnAccepted {
  turn_id: string;
  session_id: string;
  record: RecordMode;
}
