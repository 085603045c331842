-- The trail tables of 040_van_trail.sql lose their foreign keys to vans. Checking one takes a KEY
-- SHARE lock on the van's row at each insert of the scheduler's ``trails`` job, and the GPS intake
-- locks those rows FOR UPDATE (van_lock.sql): the job waited for the intake and made it wait, and
-- the two could deadlock (a review of the change). The job must never do either. A removed van's
-- trail points go with the window (the job forgets what is older than the longest trail), and the
-- vans layer joins the vans, so a point without its van is never drawn.
--
-- How the trail is kept (the job, geodata/tracking.py ``roll_trails``): each roll takes the
-- trail's newest point off (van_trail_take.sql) and simplifies it again with the van's new fixes
-- and the point before it (van_trail_roll.sql), so a straight road stays two points however long
-- it is driven and a turn adds its corner.
ALTER TABLE van_trail DROP CONSTRAINT van_trail_van_id_fkey;
ALTER TABLE van_trail_until DROP CONSTRAINT van_trail_until_van_id_fkey;
