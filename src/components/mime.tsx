/** Rendering through JupyterLab's rendermime: outputs (tables, images, errors) and markdown. */
import * as React from 'react';
import type * as nbformat from '@jupyterlab/nbformat';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

/** Hosts a Lumino widget inside a React element for the element's lifetime. */
function useAttachedWidget(
  create: () => Widget | null,
  deps: React.DependencyList
): React.RefObject<HTMLDivElement> {
  const host = React.useRef<HTMLDivElement>(null);
  React.useEffect(() => {
    const widget = create();
    if (!widget || !host.current) {
      return;
    }
    Widget.attach(widget, host.current);
    return () => widget.dispose();
  }, deps);
  return host;
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
  const host = useAttachedWidget(() => {
    const renderer = props.rendermime.createRenderer('text/markdown');
    void renderer.renderModel(
      new MimeModel({ data: { 'text/markdown': props.text }, trusted: false })
    );
    return renderer;
  }, [props.text]);
  return <div className={props.className ?? 'jp-TaskWeaver-markdown'} ref={host} />;
}
