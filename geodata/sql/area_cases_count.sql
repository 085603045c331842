-- How many cases the area view's filters select (the table's total).
SELECT count(*)
FROM cases c
WHERE {column} = %(code)s
  AND (%(step)s::text IS NULL OR c.step = %(step)s)
  AND (%(type)s::text IS NULL OR c.type = %(type)s)
  AND (%(since)s::timestamptz IS NULL OR c.reported_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR c.reported_at < %(until)s)
