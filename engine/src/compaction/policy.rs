//! Size-tiered compaction policy: a pure function from table sizes to the
//! tables to merge next.
//!
//! Tables are sorted by size and grouped into tiers: a table joins the
//! current tier if its size is within [half, one and a half times] the
//! tier's average. The policy picks the tier of smallest average that holds
//! at least `tables_min` tables, and merges up to `tables_max` of its
//! smallest. Small tiers first: they are cheap, and merging them is what
//! keeps the table count (and so read cost) down.

/// What the policy knows of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableSummary {
    pub(crate) id: u64,
    pub(crate) file_bytes: u64,
}

/// The ids of the tables to compact next, ascending, or `None`.
///
/// # Panics
/// If `tables_min < 2` or `tables_max < tables_min`: options validate them.
pub(crate) fn pick(
    tables: &[TableSummary],
    tables_min: usize,
    tables_max: usize,
) -> Option<Vec<u64>> {
    assert!(
        tables_min >= 2 && tables_max >= tables_min,
        "options validate the tier bounds"
    );
    let mut sorted = tables.to_vec();
    sorted.sort_by_key(|table| (table.file_bytes, table.id));
    let mut tiers: Vec<Vec<TableSummary>> = Vec::new();
    for table in sorted {
        let joins = tiers.last().is_some_and(|tier| {
            let average =
                tier.iter().map(|t| u128::from(t.file_bytes)).sum::<u128>() / tier.len() as u128;
            let size = u128::from(table.file_bytes);
            2 * size >= average && 2 * size <= 3 * average
        });
        match tiers.last_mut() {
            Some(tier) if joins => tier.push(table),
            _ => tiers.push(vec![table]),
        }
    }
    // Tiers come out in ascending size, so the first big enough is cheapest.
    let tier = tiers.into_iter().find(|tier| tier.len() >= tables_min)?;
    let mut ids: Vec<u64> = tier.iter().take(tables_max).map(|table| table.id).collect();
    ids.sort_unstable();
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(sizes: &[u64]) -> Vec<TableSummary> {
        sizes
            .iter()
            .zip(1..)
            .map(|(&file_bytes, id)| TableSummary { id, file_bytes })
            .collect()
    }

    #[test]
    fn too_few_similar_tables_pick_nothing() {
        assert_eq!(pick(&tables(&[100, 110, 120]), 4, 32), None);
        assert_eq!(pick(&tables(&[100, 1000, 10_000, 100_000]), 2, 32), None);
        assert_eq!(pick(&[], 2, 32), None);
    }

    #[test]
    fn smallest_full_tier_is_picked() {
        let picked = pick(&tables(&[5000, 100, 5100, 120, 4900, 90, 5050, 110]), 4, 32);
        assert_eq!(picked, Some(vec![2, 4, 6, 8]));
    }

    #[test]
    fn a_tier_is_capped_at_tables_max() {
        let picked = pick(&tables(&[100; 10]), 4, 6).expect("a tier");
        assert_eq!(picked, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn outlier_sizes_form_their_own_tier() {
        let picked = pick(&tables(&[100, 100, 100, 1000]), 3, 32);
        assert_eq!(picked, Some(vec![1, 2, 3]));
    }
}
