/**
 * The wire vocabulary: a mirror of taskweaver_lab/steps.py (`Step.to_json()`)
 * plus the protocol-only kinds of docs/architecture.md ("Server <-> sidebar protocol").
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
}

export interface IAnswerStep {
  kind: 'answer';
  text: string;
  is_question: boolean;
  stop: StopReason;
  round: number;
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
  by_role?: Record<string, number>;
}

export interface ITurnEvent {
  kind: 'turn';
  state: 'started' | 'finished' | 'failed';
  error?: string;
  usage?: IUsage;
}

export interface IApprovalEvent {
  kind: 'approval';
  draft: IDraftStep;
  verdict: IVerdictStep;
}

export interface ICellEvent {
  kind: 'cell';
  cell: nbformat.ICell;
  insert: boolean;
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
  user_base_url?: boolean;
  /** Model names users may pick; empty: any. */
  allowed_models?: string[];
  /** "landlock" when agent code only runs in sandboxed kernels. */
  sandbox?: string;
  /** The kernelspec display name to switch to when sandbox is "landlock". */
  sandbox_kernel?: string;
  /** Why this machine cannot sandbox (every turn is refused until an admin fixes it). */
  sandbox_error?: string;
  /** Plugins or examples that failed to load (the rest work). */
  load_errors?: string[];
}

export interface ISessionSnapshot {
  session_id: string;
  path: string;
  events: ChatEvent[];
  busy: boolean;
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

export interface ITurnAccepted {
  turn_id: string;
  session_id: string;
  record: 'rtc' | 'frontend' | 'file';
}
