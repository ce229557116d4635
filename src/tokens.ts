import { Token } from '@lumino/coreutils';
import type { SidebarModel } from './model';

/** The sidebar's model, for other extensions (e.g. to send a message programmatically). */
export const ITaskWeaverSidebar = new Token<SidebarModel>(
  'taskweaver_lab:ITaskWeaverSidebar',
  'The TaskWeaver sidebar model: the chat of the active notebook.'
);

export const PLUGIN_ID = 'taskweaver_lab:plugin';
export const API_NAMESPACE = 'taskweaver_lab';
