//! PLACEHOLDER for the `impersonation` check: finds nothing yet. Being implemented.

use std::sync::Arc;

use async_trait::async_trait;

use crate::pipeline::{BuildContext, Check, CheckError, ScanInput};
use crate::toml_reader::Section;
use crate::verdict::Finding;

struct Placeholder;

#[async_trait]
impl Check for Placeholder {
    fn kind(&self) -> &'static str {
        "impersonation"
    }

    async fn scan(&self, _input: &ScanInput<'_>) -> Result<Vec<Finding>, CheckError> {
        Ok(Vec::new())
    }
}

pub fn build(_options: &Section, _cx: &BuildContext) -> Option<Arc<dyn Check>> {
    Some(Arc::new(Placeholder))
}
