//! Names of the framework's tables (SPEC §5) and how their values are shaped.

pub use consort_gov::tables::*;

#[cfg(test)]
mod tests {
    #[test]
    fn the_ledger_verifier_reads_the_service_table_governance_writes() {
        assert_eq!(super::SERVICE_INFO, consort_ledger::verify::SERVICE_INFO_TABLE);
    }
}
