//! The library behind the `aka` command line (see `src/main.rs`).
//!
//! * [`model`]: read a model file and load it with aka-core, dispatching on the body kind;
//! * [`budget`]: whether a model fits a board with the firmware (`aka inspect --board`);
//! * [`inspect`]: a readable description of a model (layers, shapes, sizes, metadata);
//! * [`input`]: images for `aka run`: PNG/PGM files converted to the model's input size, or
//!   images of an MNIST-format test set;
//! * [`limits`]: the caps on file size, arena and declared work (`--max-*` flags);
//! * [`run`]: classify one image on the host with aka-core and format the scores;
//! * [`generate`]: generate text with a GPT model on the host, exactly as the firmware does.

pub mod budget;
pub mod chat;
pub mod generate;
pub mod input;
pub mod inspect;
pub mod limits;
pub mod model;
pub mod run;
