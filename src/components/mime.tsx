/** Rendering through JupyterLab's rendermime: outputs (tables, images, errors) and markdown. */
import * as React from 'react';
import type * as nbformat from '@jupyterlab/nbformat';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

/**
 * Hosts a Lumino widget inside a React element for the element's lifetime.
 *
 * A layout effect, so the widget is detached while its host is still in the document (React runs layout
 * cleanups before it removes the DOM of a deleted subtree). When the host is gone anyway (a parent was
 * removed first, e.g. the chat of another notebook), `release` finishes the detach by hand: Lumino's own
 * detach throws "Widget is not attached" there, and that error used to blank the whole panel.
 */
function useAttachedWidget(
  create: () => Widget | null,
  deps: React.DependencyList
): React.RefObject<HTMLDivElement> {
  const host = React.useRef<HTMLDivElement>(null);
  React.useLayoutEffect(() => {
    const widget = create();
    if (!widget || !host.current) {
      widget?.dispose();
      return;
    }
    Widget.attach(widget, host.current);
    return () => release(widget);
  }, deps);
  return host;
}

/** Detaches (even from a host no longer in the document) and disposes a widget; never throws. */
export function release(widget: Widget): void {
  try {
    if (widget.isAttached && !widget.node.isConnected) {
      widget.processMessage(Widget.Msg.BeforeDetach);
      widget.node.remove();
      widget.processMessage(Widget.Msg.AfterDetach);
    }
    widget.dispose();
  } catch (error) {
    console.warn('taskweaver_lab: an output widget could not be released', error);
  }
}

export function OutputsView(props: {
  outputs: nbformat.IOutput[];
  rendermime: IRenderMimeRegistry;
}): JSX.Element | null {
  const host = useAttachedWidget(() => {
    const model = new OutputAreaModel({ values: props.outputs, trusted: false });
    return new OutputArea({ model, rendermime: props.rendermime });
  }, [props.outputs]);
  if (props.outputs.length === 0) {
    return null;
  }
  return <div className="jp-TaskWeaver-outputs" ref={host} />;
}

export function MarkdownView(props: {
  text: string;
  rendermime: IRenderMimeRegistry;
  className?: string;
}): JSX.Element {
  return (
    <MimeView
      mimeType="text/markdown"
      data={props.text}
      rendermime={props.rendermime}
      className={props.className ?? 'jp-TaskWeaver-markdown'}
    />
  );
}

/** One mime bundle entry (markdown, ANSI text as application/vnd.jupyter.stderr, ...) through rendermime. */
export function MimeView(props: {
  mimeType: string;
  data: string;
  rendermime: IRenderMimeRegistry;
  className?: string;
}): JSX.Element {
  const host = useAttachedWidget(() => {
    const renderer = props.rendermime.createRenderer(props.mimeType);
    void renderer.renderModel(new MimeModel({ data: { [props.mimeType]: props.data }, trusted: false }));
    return renderer;
  }, [props.mimeType, props.data]);
  return <div className={props.className ?? 'jp-TaskWeaver-mime'} ref={host} />;
}
