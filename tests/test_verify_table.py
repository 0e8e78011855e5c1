"""Table-driven check of ``verify`` across answer types: (gold, prediction, expected)."""
from __future__ import annotations

import pytest

from rewards import verify

T, F, N = True, False, None

TABLE = [
    # --- integers and formatting -------------------------------------------
    ("72", "72", T),                                   # identical integers
    ("72", "71", F),                                   # off by one
    ("72", "072", T),                                  # leading zero
    ("72", "72.0", T),                                 # decimal form of an integer
    ("72", "72.00", T),                                # trailing zeros
    ("72", "72.01", F),                                # close but different decimal
    ("72", "72.0000001", F),                           # integer gold: no tolerance for decimals
    ("-5", "−5", T),                                   # unicode minus sign
    ("5", "+5", T),                                    # explicit plus sign
    ("-5", "5", F),                                    # sign matters
    ("1000", "1,000", T),                              # thousands separator
    ("1000000", "1,000,000", T),                       # several separators
    ("1234567", "1{,}234{,}567", T),                   # LaTeX {,} separator
    ("1000", "1\\,000", T),                            # thin-space separator
    ("1000", "1,00", F),                               # malformed groups are not thousands
    ("18", "$18", T),                                  # currency sign
    ("18", "\\$18", T),                                # escaped LaTeX dollar
    ("18", "18 dollars", T),                           # currency word
    ("18.50", "$18.5", T),                             # currency with decimals
    ("1234.56", "\\$1,234.56", T),                     # currency + separator + decimals
    ("50", "50\\%", T),                                # percent sign is presentation
    ("50\\%", "50", T),                                # ...in the gold too
    ("50", "50 percent", T),                           # percent word
    ("0.5", "50\\%", F),                               # 50% is 50, not 0.5 (documented rule)
    ("30", "30^\\circ", T),                            # degree mark
    ("30^\\circ", "30", T),                            # degree mark in gold
    ("90", "90 degrees", T),                           # degree word
    ("30", "30°", T),                                  # unicode degree sign
    ("5", "5 cm", T),                                  # trailing unit word
    ("5", "5\\text{ cm}^2", T),                        # LaTeX unit with power
    ("10", "10\\,\\text{m}", T),                         # single-letter unit inside \\text
    ("10", "10m", F),                                  # a bare letter is a variable, not a unit
    ("72", "72 clips", T),                             # GSM8K-style unit noun
    ("5", "$5$", T),                                   # inline math delimiters
    ("5", "\\(5\\)", T),                               # \( \) delimiters
    ("5", "$$5$$", T),                                 # display delimiters
    ("5", "\\boxed{5}", T),                            # boxed answer string
    ("5", "\\[5\\]", T),                               # \[ \] delimiters
    ("5", "5.", T),                                    # trailing sentence period
    ("1500", "1.5\\times 10^{3}", T),                  # scientific notation (LaTeX)
    ("1500", "1.5e3", T),                              # scientific notation (plain)
    ("0.0015", "1.5 \\times 10^{-3}", T),              # negative exponent
    ("7", "seven", F),                                 # number words are not parsed
    ("7", "", F),                                      # empty prediction is wrong
    ("7", "   ", F),                                   # whitespace prediction is wrong
    # --- fractions, decimals and the tolerance rule -----------------------------
    ("\\frac{1}{2}", "0.5", T),                        # fraction vs terminating decimal
    ("0.5", "\\frac{1}{2}", T),                        # and the other way round
    ("\\frac{1}{2}", "1/2", T),                        # LaTeX vs slash fraction
    ("\\frac{1}{2}", "2/4", T),                        # unreduced fraction
    ("\\dfrac{3}{4}", "0.75", T),                      # \dfrac
    ("\\tfrac{3}{4}", "\\frac34", T),                  # \tfrac and braceless \frac
    ("\\frac{3}{4}", "\\frac{4}{3}", F),               # inverted fraction
    ("-\\frac{3}{4}", "\\frac{-3}{4}", T),             # sign placement
    ("-\\frac{3}{4}", "-0.75", T),                     # negative decimal
    ("\\frac{1}{3}", "0.333333", T),                   # non-terminating: 1e-6 tolerance
    ("\\frac{1}{3}", "0.3333", F),                     # too few digits
    ("\\frac{1}{3}", "0.33", F),                       # rounded too coarsely
    ("\\frac{2}{3}", "0.666667", T),                   # rounded 6 digits
    ("\\frac{1}{8}", "0.125", T),                      # terminating decimal: exact
    ("\\frac{1}{8}", "0.12500001", F),                 # terminating value: no tolerance
    ("0.1", "\\frac{1}{10}", T),                       # decimal gold vs fraction
    ("0.25", "0.250", T),                              # two decimals compared exactly
    ("3.14", "\\pi", F),                               # rounded gold is not pi
    ("2\\frac{1}{2}", "\\frac{5}{2}", T),              # mixed number
    ("2\\frac{1}{2}", "2.5", T),                       # mixed number vs decimal
    ("\\frac{10}{4}", "\\frac{5}{2}", T),              # equal fractions
    ("\\frac{1}{0}", "1", N),                          # undefined gold: cannot judge
    ("1", "\\frac{1}{0}", F),                          # undefined prediction: wrong
    # --- radicals, pi, powers ------------------------------------------------
    ("\\sqrt{12}", "2\\sqrt{3}", T),                   # simplified radical
    ("\\sqrt{12}", "3\\sqrt{2}", F),                   # wrong radical
    ("2\\sqrt{2}", "\\sqrt{8}", T),                    # the other direction
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", T),  # rationalized denominator
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt3}", T), # braceless sqrt argument
    ("\\sqrt{2}", "1.414214", T),                      # decimal approximation of a surd
    ("\\sqrt{2}", "1.41", F),                          # too coarse
    ("\\sqrt{2}", "sqrt(2)", T),                       # plain-text sqrt
    ("\\sqrt{2}", "\\frac{14142135623730950488016887242097}{10^{31}}", F),  # forged 32-digit rational: sympy refutes
    ("\\sqrt{2}", "1.4142135623730950488016887242097", T),  # ...but as a decimal it is a fine approximation
    ("\\sqrt[3]{8}", "2", T),                          # cube root
    ("\\sqrt[3]{-8}", "-2", T),                        # real odd root of a negative
    ("4", "\\sqrt{16}", T),                            # perfect square
    ("3+2\\sqrt{2}", "(1+\\sqrt{2})^2", T),            # expanded square
    ("\\pi", "3.1415927", T),                          # pi to 7 decimals
    ("\\pi", "3.14", F),                               # pi to 2 decimals is not pi
    ("2\\pi", "\\pi \\cdot 2", T),                     # product order
    ("\\frac{\\pi}{2}", "\\pi/2", T),                  # plain division
    ("\\frac{3\\pi}{4}", "\\frac{3}{4}\\pi", T),       # coefficient placement
    ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}", F),         # different multiple of pi
    ("\\frac{\\pi}{2}", "pi/2", T),                    # plain-text pi
    ("2^{10}", "1024", T),                             # power evaluated
    ("1024", "2^10", T),                               # plain caret with multi-digit exponent
    ("1024", "2**10", T),                              # Python-style power
    ("2^{-1}", "0.5", T),                              # negative exponent
    ("8^{2/3}", "4", T),                               # rational exponent
    ("e^{2}", "e^2", T),                               # Euler's number
    ("\\frac{\\pi}{2}", "\\arcsin 1", T),              # transcendental identity
    ("\\ln 4", "2\\ln 2", T),                          # log identity
    ("3", "\\log_2 8", T),                             # log with a base
    ("2", "\\ln(e^2)", T),                             # log of a power of e
    ("120", "5!", T),                                  # factorial
    ("10", "\\binom{5}{2}", T),                        # binomial coefficient
    ("3", "|-3|", T),                                  # absolute value
    ("\\frac{\\sqrt{3}}{2}", "\\sin(\\pi/3)", T),      # trig value
    ("\\frac{\\sqrt{3}}{2}", "0.866", F),              # trig value rounded to 3 digits
    # --- expressions with variables ------------------------------------------
    ("x^2+2x+1", "(x+1)^2", T),                        # polynomial identity
    ("x^2-1", "(x-1)(x+1)", T),                        # factored form
    ("x^2-1", "(x-1)^2", F),                           # wrong factorization
    ("\\frac{x}{2}", "0.5x", T),                       # decimal coefficient
    ("2x", "2y", F),                                   # variable names matter
    ("|x|", "\\sqrt{x^2}", T),                         # equal for every real x
    ("x", "\\sqrt{x^2}", F),                           # differs for negative x
    ("2\\theta", "\\theta \\cdot 2", T),               # Greek variable
    ("\\Delta", "\\delta", F),                         # case matters for symbols
    ("1", "\\sin^2 x + \\cos^2 x", F),                 # a numeric gold never equals an expression in x (rule)
    ("\\frac{1}{x+1}", "(x+1)^{-1}", T),               # reciprocal
    ("a^2 - b^2", "(a-b)(a+b)", T),                    # two variables
    ("x_1 + x_2", "x_2 + x_1", T),                     # subscripted variables
    ("\\frac{-b + \\sqrt{b^2-4ac}}{2a}", "\\frac{\\sqrt{b^2-4ac}-b}{2a}", T),  # quadratic formula
    # --- equations -------------------------------------------------------------
    ("x = 3", "3", T),                                 # assignment gold vs value
    ("3", "x = 3", T),                                 # value gold vs assignment
    ("3", "x=4", F),                                   # wrong assignment
    ("x = 3", "y = 3", F),                             # assignment to another variable
    ("3", "2x = 6", F),                                # unsolved equation is not an answer
    ("y = 2x + 1", "y = 1 + 2x", T),                   # same line, reordered
    ("y = 2x + 1", "2x - y + 1 = 0", T),               # same line, implicit form
    ("y = 2x + 1", "y = 2x + 2", F),                   # different line
    ("x^2 + y^2 = 1", "2x^2 + 2y^2 = 2", T),           # scaled equation
    ("x = 2 \\text{ or } x = 3", "2, 3", T),           # disjunction of assignments as a set
    ("x = 2 \\text{ or } x = 3", "x=3 or x=2", T),     # reordered disjunction
    ("x = 2 \\text{ or } x = 3", "2", F),              # only one of two roots
    ("x = 2 \\pm \\sqrt{3}", "2-\\sqrt{3}, 2+\\sqrt{3}", T),  # plus-minus inside an assignment
    ("x = 2 \\pm \\sqrt{3}", "x = 2+\\sqrt{3}", F),       # one root of two
    # --- intervals, inequalities, unions -----------------------------------------------
    ("(-\\infty, 3]", "x \\le 3", T),                  # interval vs solved inequality
    ("x \\le 3", "(-\\infty, 3]", T),                  # inequality gold vs interval
    ("x \\le 3", "x < 3", F),                          # strictness matters
    ("x > 3", "3 < x", T),                             # flipped inequality
    ("x \\geq 3", "[3, \\infty)", T),                  # \geq vs half-open interval
    ("[3, \\infty)", "[3, \\infty]", T),               # bracket at infinity is ignored
    ("[1, 5)", "1 \\le x < 5", T),                     # chained inequality
    ("[1, 5)", "(1, 5]", F),                           # wrong open/closed ends
    ("(1, 5)", "1 < x < 5", T),                        # open pair read as interval
    ("(2, \\infty)", "x > 2", T),                      # unbounded interval
    ("(2, \\infty)", "x \\ge 2", F),                   # closed vs open end
    ("(-\\infty, -1) \\cup (2, \\infty)", "x < -1 \\text{ or } x > 2", T),  # union vs disjunction
    ("(-\\infty, -1) \\cup (2, \\infty)", "(2, \\infty) \\cup (-\\infty, -1)", T),  # union order
    ("(-\\infty, -1) \\cup (2, \\infty)", "(-oo, -1) U (2, oo)", T),  # plain-text union
    ("(-\\infty, -1) \\cup (2, \\infty)", "(-\\infty, 2)", F),  # different set
    ("[0, 1] \\cup [1, 2]", "[0, 2]", T),              # touching pieces merge
    ("(0, 1) \\cup (1, 2)", "(0, 2)", F),              # a missing point is a difference
    ("\\mathbb{R}", "(-\\infty, \\infty)", T),         # all reals
    ("x \\ne 0", "(-\\infty, 0) \\cup (0, \\infty)", T),  # not-equal as a union
    ("[0, \\pi]", "[0, \\frac{2\\pi}{2}]", T),         # symbolic endpoints
    ("[1, 2]", "x \\in [1, 2]", T),                    # membership form
    # --- a number gold needs the number, not the arithmetic (a learned echo) ----
    ("94", "12 + 82", F),                              # the question restated
    ("19", "32 + 69 - 82", F),                         # three terms restated
    ("146", "73 * 2", F),                              # a product restated
    ("12", "3 \\cdot 4", F),                           # LaTeX product
    ("1024", "2^{5} \\cdot 2^{5}", F),                 # a product of powers restated
    ("5/4", "3/4 + 1/2", F),                           # fractions summed, not added up
    ("-18", "-(76 - 58)", F),                          # a negated difference
    ("94", "\\frac{188}{2}", T),                       # a fraction literal is a number
    ("94", "(94)", T),                                 # parentheses around the number
    ("-3", "-(3)", T),                                 # a negated literal
    ("5/4", "10/8", T),                                # an unreduced fraction literal
    ("2x + 1", "x + x + 1", T),                        # symbolic golds keep their algebra
    ("(-2, 2)", "x^2 < 4", F),                         # echoing an unsolved inequality is wrong
    ("-2 < x < 2", "x^2 < 4", F),                      # ...also against an inequality gold
    ("x^2 < 4", "(-2, 2)", T),                         # unsolved gold is solved (sympy)
    ("x > 3", "y > 3", F),                             # variable mismatch
    ("5", "4 \\le x \\le 6", F),                       # an interval is not a value
    # --- tuples, points, vectors ------------------------------------------------
    ("(3, -4)", "(3,-4)", T),                          # spacing
    ("(3, -4)", "(-4, 3)", F),                         # tuples are ordered
    ("(1, 2, 3)", "(1, 2, 3)", T),                     # triple
    ("(1, 2, 3)", "(3, 2, 1)", F),                     # triple order
    ("(1, 2, 3)", "(1, 2)", F),                        # length mismatch
    ("(\\frac{1}{2}, \\sqrt{2})", "(0.5, \\sqrt2)", T),  # entries compared by value
    ("\\left( 1, 2 \\right)", "(1,2)", T),             # \left( \right)
    ("\\langle 1, 2 \\rangle", "(1, 2)", T),           # angle-bracket vector
    ("(1, 2)", "\\{1, 2\\}", F),                       # a tuple is not a set
    # --- sets and lists -----------------------------------------------------------
    ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}", T),             # sets are unordered
    ("\\{1, 2, 3\\}", "\\{1, 2\\}", F),                # missing element
    ("\\{1, 2\\}", "\\{1, 2, 2\\}", T),                # duplicates ignored
    ("1, 2", "2, 1", T),                               # bare lists are unordered
    ("1, 2", "\\{1, 2\\}", T),                         # list vs set
    ("\\{1, 2\\}", "1, 2", T),                         # set vs list
    ("\\{3\\}", "3", T),                               # singleton equals its element
    ("5", "5, 6", F),                                  # listing extra guesses is wrong
    ("5", "5 \\text{ or } 6", F),                      # disjunction of guesses is wrong
    ("2 \\pm \\sqrt{3}", "2+\\sqrt3, 2-\\sqrt3", T),   # plus-minus expands to a set
    ("\\pm 2", "2, -2", T),                            # leading plus-minus
    ("2 \\pm \\sqrt{3}", "2+\\sqrt3", F),              # only one of the pair
    ("\\{(1, 2), (3, 4)\\}", "\\{(3, 4), (1, 2)\\}", T),  # set of points
    ("\\emptyset", "\\varnothing", T),                 # empty set spellings
    ("\\emptyset", "\\{\\}", T),                       # empty braces
    ("\\emptyset", "\\{1\\}", F),                      # nonempty
    # --- matrices ------------------------------------------------------------------
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", T),  # env kind
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}", F),  # one entry
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", F),  # transpose
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1, 2)", T),  # column vector vs tuple
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1 & 2 \\end{pmatrix}", F),  # shape
    ("\\begin{pmatrix} \\frac12 \\\\ 0 \\end{pmatrix}", "\\begin{pmatrix} 0.5 \\\\ 0 \\end{pmatrix}", T),  # entry values
    # --- complex numbers ---------------------------------------------------------
    ("3+4i", "4i+3", T),                               # order of parts
    ("3+4i", "3-4i", F),                               # conjugate
    ("\\frac{1+i}{2}", "0.5+0.5i", T),                 # decimal parts
    ("i", "\\sqrt{-1}", T),                            # imaginary unit
    ("-1", "e^{i\\pi}", T),                            # Euler's identity (sympy confirms)
    ("2i", "i \\cdot 2", T),                           # product order
    # --- infinity ---------------------------------------------------------------
    ("\\infty", "oo", T),                              # plain-text infinity
    ("-\\infty", "-\\infty", T),                       # negative infinity
    ("\\infty", "-\\infty", F),                        # sign of infinity
    # --- text answers ---------------------------------------------------------------
    ("\\text{Tuesday}", "tuesday", T),                 # case-insensitive text
    ("\\text{Tuesday}", "\\text{Wednesday}", F),       # different text
    ("(B)", "B", T),                                   # choice letter without parentheses
    ("B", "(B)", T),                                   # choice letter with parentheses
    ("\\text{(C)}", "C", T),                           # choice inside \text
    ("(B)", "(C)", F),                                 # wrong choice
    ("\\text{yes}", "Yes", T),                         # yes/no answers
    ("\\text{even}", "\\text{odd}", F),                # different words
    # --- issue 21: rules a policy cannot game (see rewards.verifier, rules 1-7) --------
    ("100", "10²", T),                                 # rule 1: a superscript is a power, 10² = 100
    ("102", "10²", F),                                 # rule 1: ...never the digits 1, 0, 2
    ("x^2+1", "x²+1", T),                              # rule 1: superscript on a variable
    ("\\frac{1}{8}", "2⁻³", T),                        # rule 1: superscript minus and digits as one exponent
    ("x_1 + x_2", "x₁ + x₂", T),                       # rule 1: subscripts are indices
    ("\\frac{3}{2}", "1½", T),                         # rule 1: a vulgar fraction after a digit is a mixed number
    ("\\frac{11}{2}", "1½", F),                        # rule 1: ...never the digits 11/2
    ("1", "①", F),                                     # rule 1: circled numerals are refused, not read as 1
    ("i", "ⅰ", F),                                     # rule 1: a Roman numeral is not the imaginary unit
    ("\\frac{1}{3000000}", "0.0", F),                  # rule 3: no absolute tolerance near zero
    ("\\frac{1}{3000000}", "0.000001", F),             # rule 3: one significant digit is not an approximation
    ("\\frac{10^{12}}{3}", "333333000000.0", F),       # rule 3: tolerance is the stated precision (0.1), not 1e-6
    ("\\frac{x}{3}", "0.333333x", F),                  # rule 3: a decimal inside an expression is an exact rational
    ("5", "5 + 0.0000001x", F),                        # rule 4: a numeric gold never equals an expression in x
    ("5", "5 + 10^{-30}x", F),                         # rule 4: ...however small the variable's coefficient
    ("x", "x + 0y", F),                                # rule 4: a variable the gold does not use
    ("0", "(x-0.5772156649015329)(x+1.2020569031595942)(x-1.902160583104)", F),  # rule 4/5: roots at yesterday's fixed points
    ("x", "x + (x-0.5772156649015329)(x+1.2020569031595942)(x-1.902160583104)", F),  # rule 5: agrees only at those points
    ("x", "x + 10^{-30}x", F),                         # rule 5: exact arithmetic at rational points sees 1e-30
    ("\\frac{1}{x}", "\\frac{1}{x} + 10^{-40}", F),    # rule 5: ...and 1e-40 in a rational function
    ("\\sqrt{x}", "\\sqrt{x} + 10^{-40}", F),          # rule 5/6: tiny term in a non-rational expression: sympy refutes
    ("\\sin x", "\\sin x + e^{-100}\\cos x", F),       # rule 6: agrees to 40 digits only through a tiny term
    ("\\sqrt{2}", "\\sqrt{2} + e^{-100}", F),          # rule 6: a constant off by e^-100 is not equal
    ("a+b+c+d+f+g+h+j+k", "k+j+h+g+f+d+c+b+a", T),     # rule 5: nine variables are judged, not None
    ("2^{65536}", "4^{32768}", T),                     # rule 7: a 65536-bit exact gold is judged
    ("2^{65536}", "4^{32768} + 1", F),                 # rule 7: ...and a near miss refuted exactly
    # --- unreadable / cannot judge ---------------------------------------------------
    ("", "5", N),                                      # empty gold: cannot judge
    ("\\frac{1}{", "5", N),                            # malformed gold: cannot judge
    ("5", "\\frac{1}{", F),                            # malformed prediction: wrong
    ("@#!", "5", N),                                   # garbage gold: cannot judge
    ("5", "@#!", F),                                   # garbage prediction: wrong
    ("9^{9^{9^9}}", "5", N),                           # gold too large to evaluate: cannot judge
    ("5", "9^{9^{9^9}}", F),                           # hostile tower prediction: wrong
    ("x^2 < 4", "the interval from -2 to 2", F),       # prose prediction: wrong
]


def test_table_is_large_and_balanced():
    assert len(TABLE) >= 150
    outcomes = {row[2] for row in TABLE}
    assert outcomes == {True, False, None}


@pytest.mark.parametrize("gold,prediction,expected", TABLE)
def test_verify_table(gold, prediction, expected):
    verdict = verify(gold, prediction)
    assert verdict.equal is expected, verdict.reason
    assert isinstance(verdict.reason, str) and verdict.reason
