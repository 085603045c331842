-- Attachments with their case's code, oldest first; {where} is built by geodata/attachments.py
-- (the attachment or case asked for, and the reader's area scope: applied here, in the SQL).
SELECT a.id, c.code AS case_code, a.kind, a.media_type, a.served_type, a.size, a.served_size, a.width, a.height,
       a.filename, a.sha256, a.served_sha256, a.thumb_sha256, a.actor_kind, a.actor_id, a.actor_name,
       a.actor_role, a.created_at, a.request_hash, a.idem_position,
       c.grid_code, c.village_code, c.town_code, c.banner_code, c.assignee
FROM attachments a
JOIN cases c ON c.id = a.case_id
WHERE {where}
ORDER BY a.id
