import * as React from 'react';
import type { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { errorSummary, IErrorSummary } from '../present';
import type { IExecutionItem } from '../turns';
import { MimeView, OutputsView } from './mime';

/** One execution: status line, outputs through rendermime, artifacts as download links. */
export function ExecutionView(props: {
  item: IExecutionItem;
  rendermime: IRenderMimeRegistry;
  downloadUrl: (artifact: string) => Promise<string | null>;
}): JSX.Element {
  const { execution } = props.item;
  const error = errorSummary(execution);
  const outputs = error ? execution.outputs.filter(output => output.output_type !== 'error') : execution.outputs;
  return (
    <div className="jp-TaskWeaver-execution" data-ok={execution.ok}>
      <div className="jp-TaskWeaver-executionStatus">{statusLine(execution)}</div>
      <OutputsView outputs={outputs} rendermime={props.rendermime} />
      {error && <ErrorFold error={error} rendermime={props.rendermime} />}
      {execution.artifacts.length > 0 && (
        <ul className="jp-TaskWeaver-artifacts">
          {execution.artifacts.map(artifact => (
            <li key={artifact}>
              <ArtifactLink artifact={artifact} downloadUrl={props.downloadUrl} />
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** The error's last line with its step; the full traceback folded, rendered by JupyterLab's rendermime. */
function ErrorFold(props: { error: IErrorSummary; rendermime: IRenderMimeRegistry }): JSX.Element {
  const { error } = props;
  const hasDetail = error.errorOutputs.length > 0 || !!error.text.trim();
  return (
    <div className="jp-TaskWeaver-errorFold">
      <div className="jp-TaskWeaver-errorLine">{error.line}</div>
      {hasDetail && (
        <details className="jp-TaskWeaver-traceback">
          <summary>Full traceback</summary>
          {error.errorOutputs.length > 0 ? (
            <OutputsView outputs={error.errorOutputs} rendermime={props.rendermime} />
          ) : (
            <MimeView mimeType="application/vnd.jupyter.stderr" data={error.text} rendermime={props.rendermime} />
          )}
        </details>
      )}
    </div>
  );
}

function statusLine(execution: IExecutionItem['execution']): string {
  const count = execution.execution_count === null ? '' : ` [${execution.execution_count}]`;
  const time = `${execution.duration_s.toFixed(1)} s`;
  if (execution.interrupted) {
    return `Interrupted${count} after ${time}`;
  }
  return execution.ok ? `Ran${count} in ${time}` : `Failed${count} after ${time}`;
}

function ArtifactLink(props: {
  artifact: string;
  downloadUrl: (artifact: string) => Promise<string | null>;
}): JSX.Element {
  const [url, setUrl] = React.useState<string | null>(null);
  React.useEffect(() => {
    let live = true;
    void props.downloadUrl(props.artifact).then(found => live && setUrl(found));
    return () => {
      live = false;
    };
  }, [props.artifact]);
  const name = props.artifact.split('/').pop() || props.artifact;
  return url ? (
    <a href={url} download={name} className="jp-TaskWeaver-artifact">
      {name}
    </a>
  ) : (
    <span className="jp-TaskWeaver-artifact">{props.artifact}</span>
  );
}
