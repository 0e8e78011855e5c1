-- 008: the agreement filter's record per self proposal (loop/proposer/agreement.py).
-- proposals.agreement: majority | second_program (NULL: no check ran, e.g. rejected earlier, or `none`);
-- proposals.votes: {"mode", "votes": [answers], "agree": n, "majority": answer, "agreed": bool}.
ALTER TABLE proposals ADD COLUMN agreement VARCHAR;
ALTER TABLE proposals ADD COLUMN votes JSON;
