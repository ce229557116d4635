import * as React from 'react';

/** One part of the chat that fails to render says so; the rest of the panel stays. */
export class PartBoundary extends React.Component<{ children: React.ReactNode }, { failed: string }> {
  state = { failed: '' };

  static getDerivedStateFromError(error: unknown): { failed: string } {
    return { failed: error instanceof Error ? error.message : String(error) };
  }

  componentDidCatch(error: unknown): void {
    console.warn('taskweaver_lab: part of the chat could not be shown', error);
  }

  render(): React.ReactNode {
    if (this.state.failed) {
      return (
        <div className="jp-TaskWeaver-error">
          This part of the chat could not be shown ({this.state.failed}); reload the page to see it again.
        </div>
      );
    }
    return this.props.children;
  }
}
