// @acme/herald-notifications: the platform's real-time notifications from Herald, for Vue 3.

export { useNotificationWebSocket } from './useNotificationWebSocket.js';
export { ADMIN_ROLES, CATALOG_EVENTS, INBOX_EVENTS, channelsFor, isAdmin } from './channels.js';
export { describe } from './describe.js';
