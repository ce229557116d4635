import * as React from 'react';
import { Clipboard } from '@jupyterlab/apputils';
import type { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { figureLinks, ICellTarget, IFigureLink } from '../present';
import type { IAnswerStep } from '../types';
import { MarkdownView } from './mime';

/**
 * The round's answer, set apart from the working: its text, each figure with the cell that computed it
 * (a link that selects that cell in the notebook), a copy button, and the usage line beneath.
 */
export function AnswerView(props: {
  answer: IAnswerStep;
  session: string;
  rendermime: IRenderMimeRegistry;
  showCell: (target: ICellTarget) => Promise<boolean>;
  footer?: React.ReactNode;
}): JSX.Element {
  const { answer } = props;
  const links = figureLinks(answer, props.session);
  return (
    <section
      className={`jp-TaskWeaver-answerBox${answer.is_question ? ' jp-mod-question' : ''}`}
      aria-label={answer.is_question ? 'TaskWeaver asks' : 'Answer'}
    >
      <MarkdownView
        text={answer.text}
        rendermime={props.rendermime}
        className={`jp-TaskWeaver-answer${answer.is_question ? ' jp-mod-question' : ''}`}
      />
      {links.length > 0 && <FigureList links={links} showCell={props.showCell} />}
      <div className="jp-TaskWeaver-answerActions">
        <CopyButton text={answer.text} />
        {props.footer}
      </div>
    </section>
  );
}

function FigureList(props: {
  links: IFigureLink[];
  showCell: (target: ICellTarget) => Promise<boolean>;
}): JSX.Element {
  const [problem, setProblem] = React.useState('');
  const open = async (target: ICellTarget) => {
    const found = await props.showCell(target).catch(() => false);
    setProblem(found ? '' : 'That cell is no longer in the open notebook (it was deleted, or the notebook is closed).');
  };
  return (
    <div className="jp-TaskWeaver-figures">
      <span className="jp-TaskWeaver-figuresTitle">Computed in:</span>
      <ul>
        {props.links.map(link => (
          <li key={link.figure} className="jp-TaskWeaver-figure" data-kind={link.kind}>
            {link.target ? (
              <button
                className="jp-TaskWeaver-figureLink"
                title="Show the notebook cell that computed this figure"
                onClick={() => void open(link.target as ICellTarget)}
              >
                {link.label}
              </button>
            ) : (
              <span className={link.kind === 'not-computed' ? 'jp-TaskWeaver-notComputed' : ''}>{link.label}</span>
            )}
          </li>
        ))}
      </ul>
      {problem && <div className="jp-TaskWeaver-error">{problem}</div>}
    </div>
  );
}

function CopyButton(props: { text: string }): JSX.Element {
  const [state, setState] = React.useState<'idle' | 'copied' | 'failed'>('idle');
  const copy = () => {
    try {
      Clipboard.copyToSystem(props.text);
      setState('copied');
    } catch {
      setState('failed');
    }
  };
  const label = state === 'copied' ? 'Copied' : state === 'failed' ? 'Copy failed: select the text' : 'Copy';
  return (
    <button className="jp-mod-styled jp-TaskWeaver-copy" aria-label="Copy the answer" onClick={copy}>
      {label}
    </button>
  );
}
