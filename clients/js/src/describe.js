// A title and a message for every catalog broadcast, for lists and toasts. Pure functions.

const amount = (value) => (typeof value === 'number' ? value.toFixed(2) : String(value ?? ''));

/** @type {Record<string, (payload: any) => {title: string, message: string}>} */
const DESCRIBERS = {
  'notification.created': (p) => ({ title: p.notification?.title ?? 'Notification', message: p.notification?.message ?? '' }),
  'payment.failed': (p) => ({
    title: 'Payment failed',
    message: `Your payment of ${amount(p.amount)} ${p.currency ?? ''} failed: ${p.reason ?? 'unknown reason'}`,
  }),
  'donation.large': (p) => ({
    title: 'Large donation',
    message: `${p.donor_name ?? 'A donor'} gave ${amount(p.amount)} ${p.currency ?? ''} to campaign ${p.campaign_id}`,
  }),
  'campaign.milestone': (p) => ({
    title: `${p.campaign_title ?? `Campaign ${p.campaign_id}`} reached ${p.milestone}%`,
    message: `${amount(p.amount_raised)} of ${amount(p.goal_amount)} ${p.currency ?? ''} raised`,
  }),
  'campaign.approval_needed': (p) => ({
    title: 'Campaign awaiting approval',
    message: `${p.campaign_title ?? `Campaign ${p.campaign_id}`}, submitted by ${p.submitted_by?.name ?? 'someone'}`,
  }),
  'security.alert': (p) => ({ title: `Security alert (${p.severity})`, message: p.message ?? p.alert_type ?? '' }),
  'system.maintenance': (p) => ({
    title: `Maintenance ${p.maintenance_type ?? ''}`.trim(),
    message: `${p.scheduled_for ?? ''}, ${p.duration_minutes ?? '?'} min${
      p.affected_services?.length ? `: ${p.affected_services.join(', ')}` : ''
    }`,
  }),
  'compliance.issue': (p) => ({ title: `Compliance issue (${p.severity})`, message: p.message ?? p.issue_type ?? '' }),
};

/**
 * `{title, message}` for a broadcast payload.
 * @param {string} event the Pusher event name (`donation.large`)
 * @param {object} payload
 */
export function describe(event, payload) {
  const describer = DESCRIBERS[event];
  if (describer) return describer(payload ?? {});
  return { title: event, message: typeof payload?.message === 'string' ? payload.message : '' };
}
