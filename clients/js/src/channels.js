// Which channels a user listens to, from their roles: the platform's channel policies
// (shared/DESIGN.md, "Channel policies"; docs/authorization.md). Pure functions, no Vue.

/** The roles that open the admin channels. */
export const ADMIN_ROLES = Object.freeze(['super_admin', 'csr_admin', 'finance_admin', 'hr_manager']);

/** Every broadcast of the event catalog (docs/events.md): the Pusher event names. */
export const CATALOG_EVENTS = Object.freeze([
  'notification.created',
  'payment.failed',
  'donation.large',
  'campaign.milestone',
  'campaign.approval_needed',
  'security.alert',
  'system.maintenance',
  'compliance.issue',
]);

/** The broadcasts that are also stored in the user's inbox (their payload `id` is the inbox id). */
export const INBOX_EVENTS = Object.freeze(['notification.created', 'payment.failed']);

/**
 * @typedef {object} HeraldUser
 * @property {string|number} id
 * @property {string|number|null} [organization_id]
 * @property {string[]} [roles]
 */

/**
 * @typedef {object} ChannelPlan
 * @property {string} name Logical (Laravel) name: `admin-dashboard`, `user.notifications.42`.
 * @property {'private'|'public'} visibility `private` → `Echo.private(name)` (wire name
 *   `private-…`), `public` → `Echo.channel(name)`.
 * @property {string[]} events Broadcasts listened to on it.
 * @property {'user'|'organization'|'campaign'|'admin'|'public'} kind `user` is the personal
 *   channel, whose broadcasts the inbox also holds.
 */

/**
 * The channels `user` may and should listen to.
 *
 * @param {HeraldUser} user
 * @param {object} [options]
 * @param {'private'|'public'} [options.adminVisibility='private'] `public` when the server runs
 *   with `[channels] admin_visibility = "public"` (the original module's public admin names).
 * @param {(string|number)[]} [options.campaigns=[]] campaign ids whose `campaign.{id}` channel to
 *   listen to as well.
 * @returns {ChannelPlan[]}
 */
export function channelsFor(user, { adminVisibility = 'private', campaigns = [] } = {}) {
  if (user?.id === undefined || user?.id === null || user?.id === '') {
    throw new TypeError('useNotificationWebSocket: user.id is required');
  }
  const roles = new Set(user.roles ?? []);
  const has = (...names) => names.some((name) => roles.has(name));
  const adminRoles = ADMIN_ROLES.filter((role) => roles.has(role));
  const all = [...CATALOG_EVENTS];
  /** @type {ChannelPlan[]} */
  const plan = [
    { name: `user.notifications.${user.id}`, visibility: 'private', events: all, kind: 'user' },
  ];
  const org = user.organization_id;
  if (org !== undefined && org !== null && org !== '') {
    plan.push({ name: `organization.${org}`, visibility: 'private', events: all, kind: 'organization' });
  }
  for (const campaign of campaigns) {
    plan.push({ name: `campaign.${campaign}`, visibility: 'private', events: all, kind: 'campaign' });
  }
  const admin = (name) => ({ name, visibility: adminVisibility, events: all, kind: /** @type {const} */ ('admin') });
  if (adminRoles.length) plan.push(admin('admin-dashboard'));
  for (const role of adminRoles) plan.push(admin(`admin-role-${role}`));
  if (has('super_admin')) plan.push(admin('security-alerts'));
  if (has('super_admin', 'csr_admin')) plan.push(admin('compliance-notifications'));
  if (has('super_admin', 'finance_admin')) plan.push(admin('payment-notifications'));
  plan.push({ name: 'system-maintenance', visibility: 'public', events: all, kind: 'public' });
  return plan;
}

/** True when the user holds any admin role. */
export function isAdmin(user) {
  return (user?.roles ?? []).some((role) => ADMIN_ROLES.includes(role));
}
