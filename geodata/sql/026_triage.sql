-- Triage at intake (issue 14 item 5): how serious a dispute is sets the level it starts at
-- (simple → grid, ordinary → village, complex → town, major → banner by default; settings), how many
-- people it involves (群体性 from YITU_GROUP_DISPUTE_PEOPLE, 5, up) and the sum at stake in yuan.
-- All three are optional: reports from older clients carry none and keep starting at the grid.
ALTER TABLE cases
    ADD COLUMN severity        text CHECK (severity IN ('simple', 'ordinary', 'complex', 'major')),
    ADD COLUMN people_involved integer CHECK (people_involved BETWEEN 1 AND 100000),
    ADD COLUMN amount_yuan     numeric(14, 2) CHECK (amount_yuan >= 0 AND amount_yuan <= 1e12);
