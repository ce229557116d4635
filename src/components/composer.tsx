import * as React from 'react';

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
