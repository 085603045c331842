-- The banners an area lies in or holds (the root: all of its banners; a banner or anything inside it:
-- its own), in code order.
SELECT code FROM areas
WHERE level = 1 AND (starts_with(code, %(code)s) OR starts_with(%(code)s, code))
ORDER BY code
