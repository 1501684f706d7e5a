"""Table-1 ranks of the MedShift paper (Caetano et al., AIM 2025).

The rule, read off the published Table 1 (13 ranked methods; its "Synthetic Images" reference
row is listed but not ranked) and reproduced exactly by `table1_ranks` on its numbers:

* realism rank   = rank of the method's Fréchet distance (CFID, lower is better);
* structure rank = rank of the method's SSIM against the source image (higher is better);
* average rank   = mean of the two group ranks.

Coverage, CMMD and LPIPS are reported next to the ranks but do not move them: every other
rule tried on the published numbers (sums or means of per-metric ranks, means of min-max or
z-normalised metrics) gives different ranks than the table. Ranks are competition ranks
("1, 1, 3"): equal values share the best rank and the next rank is skipped, as for the two
Hierarchy Flow rows with SSIM 0.99 that both rank 1 and the next row ranks 3. Values are
compared at the precision the table prints (two decimals, `TABLE_DECIMALS`), so rows that look
tied in the table are tied in the ranks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

TABLE_DECIMALS = 2
REALISM_KEY = "fd"
STRUCTURE_KEY = "ssim"


def competition_rank(values: Sequence[float], higher_is_better: bool, decimals: int | None = TABLE_DECIMALS) -> list[int]:
    """Competition ranks (1 = best; ties share the best rank, the next rank is skipped).

    Args:
        values: one score per method.
        higher_is_better: True for SSIM / coverage, False for distances.
        decimals: round to this many decimals before comparing (None: compare exact values).
    """
    scores = np.asarray(values, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"cannot rank non-finite values: {list(values)}")
    if decimals is not None:
        scores = np.round(scores, decimals)
    if higher_is_better:
        scores = -scores
    return [int(r) for r in rankdata(scores, method="min")]


def table1_ranks(
    rows: Sequence[Mapping[str, float]],
    realism_key: str = REALISM_KEY,
    structure_key: str = STRUCTURE_KEY,
    decimals: int | None = TABLE_DECIMALS,
) -> list[dict[str, float]]:
    """Realism, structure and average ranks of the ranked methods of a Table-1 style comparison.

    Args:
        rows: one mapping per ranked method holding at least `realism_key` (lower is better)
            and `structure_key` (higher is better). Reference rows (the untranslated source
            images) should not be passed: the paper lists them unranked.
        realism_key: the metric the realism rank is taken on (the Fréchet distance).
        structure_key: the metric the structure rank is taken on (SSIM against the source).
        decimals: comparison precision, see `competition_rank`.

    Returns:
        One dict per row, in order: ``{"realism_rank": int, "structure_rank": int, "average_rank": float}``.
    """
    if not rows:
        return []
    realism = competition_rank([row[realism_key] for row in rows], higher_is_better=False, decimals=decimals)
    structure = competition_rank([row[structure_key] for row in rows], higher_is_better=True, decimals=decimals)
    return [
        {"realism_rank": r, "structure_rank": s, "average_rank": (r + s) / 2.0}
        for r, s in zip(realism, structure)
    ]
