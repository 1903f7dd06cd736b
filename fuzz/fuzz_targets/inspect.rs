//! The tools' byte-level model reader (`aka_tools::model::load`) and the `aka inspect` text
//! (`aka_tools::inspect::describe`) on arbitrary bytes: no panic, no overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = aka_tools::model::load(data) {
        let _ = model.kind();
        let text = aka_tools::inspect::describe(&model, "fuzz.aka");
        assert!(!text.is_empty());
    }
});
