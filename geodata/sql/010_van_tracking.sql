-- Van tracking: the devices that may report a van's GPS, and the rule that says a van is offline.
--
-- A device identifier (the "id" of the OsmAnd protocol that Traccar Client sends) is the only
-- credential such a phone has, so like api_tokens only its SHA-256 is stored. One van may have
-- several devices (the vehicle terminal and a crew phone); a device reports for one van.
CREATE TABLE van_devices (
    device_hash text PRIMARY KEY CHECK (device_hash ~ '^[0-9a-f]{64}$'),
    van_id      text NOT NULL REFERENCES vans (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX van_devices_van_idx ON van_devices (van_id);

-- What a screen shows for a van: its dispatch status (available / en_route / on_site), or
-- 'offline' when it has not reported since now - offline_after (or never). Computed on read,
-- never written back, so a van that comes back keeps the dispatch status it had.
CREATE FUNCTION yitu_van_status(status text, last_seen_at timestamptz, offline_after interval,
                                at timestamptz DEFAULT now())
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN last_seen_at IS NULL OR last_seen_at < at - offline_after THEN 'offline' ELSE status END
$$;
