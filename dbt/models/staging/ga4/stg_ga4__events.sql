-- One row per GA4 event (event_key), the latest landed copy: re-read export days land the same
-- event again. Traffic source: the collected (session) source, else the event-level params.
-- (The select is the macro ga4_staged_events, which int_ga4__events' incremental runs also apply
-- to the landed rows of their window.)
{{ ga4_staged_events(source('ga4', 'ga4__events')) }}
