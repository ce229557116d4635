import * as React from 'react';
import { UseSignal } from '@jupyterlab/ui-components';
import type { ComposerModel } from '../viewmodel';

/** The message box with the reason the last message was not sent; re-rendered by its own model only. */
export function ComposerView(props: { composer: ComposerModel }): JSX.Element {
  const { composer } = props;
  return (
    <UseSignal signal={composer.changed}>
      {() => (
        <>
          {composer.error && <div className="jp-TaskWeaver-error jp-TaskWeaver-sendError">{composer.error}</div>}
          <Composer
            value={composer.text}
            busy={composer.busy}
            disabled={composer.disabled}
            onChange={value => (composer.text = value)}
            onSend={() => void composer.send()}
            onStop={() => void composer.stop()}
          />
        </>
      )}
    </UseSignal>
  );
}

/** The message box with Send, or Stop while a turn is active. */
export function Composer(props: {
  value: string;
  busy: boolean;
  disabled: boolean;
  onChange: (value: string) => void;
  onSend: () => void;
  onStop: () => void;
}): JSX.Element {
  const onKeyDown = (event: React.KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      if (!props.busy && !props.disabled) {
        props.onSend();
      }
    }
  };
  return (
    <div className="jp-TaskWeaver-composer">
      <textarea
        className="jp-TaskWeaver-input"
        placeholder="Ask TaskWeaver to analyse data in this notebook… (Enter to send)"
        value={props.value}
        disabled={props.disabled}
        onChange={event => props.onChange(event.target.value)}
        onKeyDown={onKeyDown}
        rows={3}
      />
      {props.busy ? (
        <button className="jp-mod-styled jp-mod-warn jp-TaskWeaver-stop" onClick={props.onStop}>
          Stop
        </button>
      ) : (
        <button
          className="jp-mod-styled jp-mod-accept jp-TaskWeaver-send"
          onClick={props.onSend}
          disabled={props.disabled || !props.value.trim()}
        >
          Send
        </button>
      )}
    </div>
  );
}
