-- 我的待办 (geodata/warnings.py inbox): the open cases waiting on one person, by deadline —
-- assigned to their mediator row (mediators.user_id), to its unit or to its van, or, with %(queue)s,
-- waiting to be verified or dispatched (reported, accepted: the dispatcher's queue, dispatch_queue.sql)
-- with nobody assigned at %(level)s (NULL: any level) — all inside the reader's area scope
-- %(scope)s. Each row carries the totals of the whole list (before the LIMIT): overdue, due before
-- the end of today (China time, %(day_end)s), due within 24 hours, warned (a deadline warning raised
-- for the case's current level and deadline, deadline not yet passed).
-- The assignee branches read cases_assignee_open_idx; the queue reads the open cases (cases_open_idx),
-- scoped before the join (a city's grid-level queue is long; one grid's is short). The scope is
-- applied once more to every row: a case assigned to me outside my area stays out of sight.
WITH me AS (
    SELECT m.id::text AS mediator, m.unit_id::text AS unit, m.van_id AS van
    FROM mediators m
    WHERE m.user_id = %(user_id)s AND m.active
), waiting AS (
    SELECT c.id, 'mine' AS why FROM cases c JOIN me ON c.assignee ->> 'id' = me.mediator
    WHERE yitu_step_open(c.step) AND c.assignee ->> 'kind' = 'mediator'
    UNION ALL
    SELECT c.id, 'unit' FROM cases c JOIN me ON c.assignee ->> 'id' = me.unit
    WHERE yitu_step_open(c.step) AND c.assignee ->> 'kind' = 'unit'
    UNION ALL
    SELECT c.id, 'van' FROM cases c JOIN me ON c.assignee ->> 'id' = me.van
    WHERE yitu_step_open(c.step) AND c.assignee ->> 'kind' = 'van'
    UNION ALL
    SELECT c.id, 'queue' FROM cases c
    WHERE %(queue)s AND c.step IN ('reported', 'accepted') AND c.assignee IS NULL
      AND (%(level)s::text IS NULL OR c.level = %(level)s)
      AND yitu_in_scope(%(scope)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)
)
SELECT c.code, c.type, t.name_zh AS type_zh, t.name_en AS type_en, c.step, c.level, c.deadline, c.reported_at,
       w.why, c.grid_code, coalesce(g.name, v.name) AS place, c.flags, dw.raised_at AS warned_at,
       count(*) OVER () AS total,
       count(*) FILTER (WHERE c.deadline < %(now)s) OVER () AS overdue,
       count(*) FILTER (WHERE c.deadline >= %(now)s AND c.deadline < %(day_end)s) OVER () AS due_today,
       count(*) FILTER (WHERE c.deadline >= %(now)s AND c.deadline < %(now)s + interval '24 hours') OVER () AS due_24h,
       count(dw.id) FILTER (WHERE c.deadline >= %(now)s) OVER () AS warned
FROM waiting w
JOIN cases c ON c.id = w.id
JOIN case_types t ON t.code = c.type
LEFT JOIN areas g ON g.code = c.grid_code
LEFT JOIN areas v ON v.code = c.village_code
LEFT JOIN deadline_warnings dw ON dw.case_id = c.id AND dw.level = c.level AND dw.deadline = c.deadline
WHERE yitu_in_scope(%(scope)s::text, c.grid_code, c.village_code, c.town_code, c.banner_code)
ORDER BY c.deadline NULLS LAST, c.reported_at, c.id
LIMIT %(limit)s
