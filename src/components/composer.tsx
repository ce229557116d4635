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
    if (event.key === 'Escape' && props.busy) {
      event.preventDefault();
      props.onStop();
      return;
    }
    if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
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
        placeholder="Ask TaskWeaver to analyse data in this notebook… (Enter to send, Shift+Enter for a new line)"
        aria-label="Message to TaskWeaver"
        title="Enter sends, Shift+Enter adds a line, Escape stops a running turn"
        value={props.value}
        disabled={props.disabled}
        onChange={event => props.onChange(event.target.value)}
        onKeyDown={onKeyDown}
        rows={3}
      />
      {props.busy ? (
        <button
          className="jp-mod-styled jp-mod-warn jp-TaskWeaver-stop"
          onClick={props.onStop}
          aria-label="Stop the running turn (Escape)"
          title="Stop the running turn (Escape)"
        >
          Stop
        </button>
      ) : (
        <button
          className="jp-mod-styled jp-mod-accept jp-TaskWeaver-send"
          onClick={props.onSend}
          disabled={props.disabled || !props.value.trim()}
          aria-label="Send the message (Enter)"
          title="Send the message (Enter)"
        >
          Send
        </button>
      )}
    </div>
  );
}
