import pytest

from medshift.metrics import competition_rank, table1_ranks

# MedShift paper, Table 1 (the 13 ranked rows): CFID, coverage, CMMD, realism rank,
# LPIPS, SSIM, structure rank, average rank
PAPER_TABLE_1 = [
    ("Hierarchy Flow (st=0.1)", 260.75, 0.47, 10.62, 13, 0.01, 0.99, 1, 7),
    ("Hierarchy Flow (st=0.25)", 253.59, 0.50, 10.64, 12, 0.01, 0.99, 1, 6.5),
    ("Hierarchy Flow (st=0.4)", 253.09, 0.55, 12.02, 11, 0.40, 0.58, 11, 11),
    ("CycleGAN-Turbo (ss=0.0)", 161.11, 0.85, 5.68, 3, 0.47, 0.70, 10, 6.5),
    ("CycleGAN-Turbo (ss=0.5)", 154.66, 0.81, 1.89, 2, 0.52, 0.55, 13, 7.5),
    ("CycleGAN-Turbo (ss=1.0)", 147.39, 0.86, 2.51, 1, 0.51, 0.56, 12, 6.5),
    ("Z-STAR", 205.26, 0.60, 9.41, 10, 0.13, 0.90, 4, 7),
    ("SDEdit (st=0.1)", 204.27, 0.65, 7.18, 9, 0.12, 0.89, 5, 7),
    ("SDEdit (st=0.2)", 196.06, 0.70, 7.47, 7, 0.17, 0.83, 7, 7),
    ("SDEdit (st=0.3)", 190.12, 0.71, 7.89, 5, 0.21, 0.78, 8, 6.5),
    ("MedShift (tau=0.6)", 201.72, 0.65, 8.10, 8, 0.09, 0.91, 3, 5.5),
    ("MedShift (tau=0.45)", 195.17, 0.72, 8.17, 6, 0.14, 0.85, 6, 6),
    ("MedShift (tau=0.3)", 171.59, 0.71, 8.14, 4, 0.24, 0.75, 9, 6.5),
]


def test_reproduces_the_papers_table_1_ranks():
    rows = [{"fd": r[1], "coverage": r[2], "cmmd": r[3], "lpips": r[5], "ssim": r[6]} for r in PAPER_TABLE_1]
    ranks = table1_ranks(rows)
    for paper_row, got in zip(PAPER_TABLE_1, ranks):
        expected = {"realism_rank": paper_row[4], "structure_rank": paper_row[7], "average_rank": paper_row[8]}
        assert got == expected, paper_row[0]


def test_competition_ranks_share_ties_and_skip():
    assert competition_rank([0.99, 0.91, 0.99], higher_is_better=True) == [1, 3, 1]
    assert competition_rank([3.0, 1.0, 2.0], higher_is_better=False) == [3, 1, 2]
    # compared at the printed precision: 0.991 and 0.989 both print as 0.99
    assert competition_rank([0.991, 0.989], higher_is_better=True) == [1, 1]
    assert competition_rank([0.991, 0.989], higher_is_better=True, decimals=None) == [1, 2]


def test_non_finite_values_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        competition_rank([1.0, float("nan")], higher_is_better=False)
