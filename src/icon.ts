import { LabIcon } from '@jupyterlab/ui-components';

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <path class="jp-icon3" fill="#616161" d="M4 4h16v2H4zm0 5h10v2H4zm0 5h16v2H4zm0 5h10v2H4zm14-10 4 3-4 3z"/>
</svg>`;

export const taskweaverIcon = new LabIcon({ name: 'taskweaver_lab:icon', svgstr: svg });
