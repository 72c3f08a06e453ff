-- Which organization runs each campaign, learnt from campaign domain events; the campaign.{id}
-- channel policy admits that organization's members.
CREATE TABLE IF NOT EXISTS campaign_organizations (
    campaign_id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
