-- Cases of an area by workflow step: open ones now, and this year's closed/evaluated ones.
SELECT step, count(*) AS n
FROM cases
WHERE {column} = %(code)s
  AND (yitu_step_open(step)
       OR reported_at >= date_trunc('year', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai')
GROUP BY step
