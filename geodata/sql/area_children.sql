-- An area's children, in code order.
SELECT code, name, level, parent_code FROM areas WHERE parent_code = %(code)s ORDER BY code
