//! What [`fit`] prints while it runs: a progress bar on a terminal, plain periodic
//! lines otherwise, an evaluation line at each evaluation.
//!
//! Two layouts, after the [`Cadence`]: per epoch (a bar per epoch, lines ten times an epoch with
//! the running mean loss and samples/s) and per step (one bar for the run, lines five times an
//! evaluation interval with the last loss, the last validation loss and the step it was measured
//! at, and ms/step).

use std::io::IsTerminal as _;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::{Cadence, EvalRecord, Log};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A bar when stdout is a terminal, plain periodic lines otherwise.
    Auto,
    /// Plain periodic lines.
    Lines,
    /// Nothing but the evaluation lines.
    Quiet,
}

/// The live display of one [`fit`] call.
pub(super) struct Reporter {
    cadence: Cadence,
    /// Steps of the whole run (the schedule's length).
    steps: usize,
    /// Where this call stops.
    end: usize,
    show_bar: bool,
    print_lines: bool,
    quiet: bool,
    bar: Option<ProgressBar>,
    line_every: usize,
    run_start_step: usize,
    run_start: Instant,
    run_train_secs: f64,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("valid template")
}

impl Reporter {
    /// A display for steps `start..end` of a `steps`-step run.
    pub(super) fn new(
        progress: Progress,
        cadence: Cadence,
        steps: usize,
        start: usize,
        end: usize,
    ) -> Self {
        let show_bar = progress == Progress::Auto && std::io::stdout().is_terminal();
        let print_lines = progress == Progress::Lines || (progress == Progress::Auto && !show_bar);
        let (bar, line_every) = match cadence {
            Cadence::Epochs {
                steps_per_epoch, ..
            } => (None, (steps_per_epoch / 10).max(1)),
            Cadence::Steps { eval_interval } => {
                let bar = (show_bar && start < end).then(|| {
                    let bar = ProgressBar::new(end as u64);
                    bar.set_style(style(
                        "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                    ));
                    bar.set_position(start as u64);
                    bar.reset_eta();
                    bar
                });
                (bar, (eval_interval / 5).max(1))
            }
        };
        Self {
            cadence,
            steps,
            end,
            show_bar,
            print_lines,
            quiet: progress == Progress::Quiet,
            bar,
            line_every,
            run_start_step: start,
            run_start: Instant::now(),
            run_train_secs: 0.0,
        }
    }

    /// Before the 0-based step `step`: opens an epoch's bar.
    pub(super) fn step_started(&mut self, step: usize) {
        if let Cadence::Epochs {
            steps_per_epoch, ..
        } = self.cadence
        {
            if self.show_bar && step.is_multiple_of(steps_per_epoch) {
                let bar = ProgressBar::new(steps_per_epoch as u64);
                bar.set_style(style(
                    "epoch {prefix} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                ));
                bar.set_prefix(format!(
                    "{}/{}",
                    step / steps_per_epoch + 1,
                    self.steps / steps_per_epoch
                ));
                self.bar = Some(bar);
            }
        }
    }

    /// After `step` steps (1-based count), the last of which had loss `loss` and took `seconds`.
    pub(super) fn step_done(&mut self, step: usize, loss: f32, seconds: f64, log: &Log) {
        self.run_train_secs += seconds;
        match self.cadence {
            Cadence::Epochs {
                steps_per_epoch,
                examples,
            } => {
                let in_epoch = (step - 1) % steps_per_epoch + 1;
                let seen = log.since_eval.loss.weight();
                let rate = seen as f64 / log.since_eval.seconds.max(1e-9);
                let running = log.since_eval.loss.sum() / seen as f64;
                if let Some(bar) = &self.bar {
                    bar.set_position(in_epoch as u64);
                    bar.set_message(format!("loss {running:.4} · {rate:.0} samples/s"));
                } else if self.print_lines
                    && (in_epoch.is_multiple_of(self.line_every) || in_epoch == steps_per_epoch)
                {
                    let eta = examples.saturating_sub(seen) as f64 / rate;
                    println!(
                        "epoch {}/{} step {in_epoch}/{steps_per_epoch} loss {running:.4} {rate:.0} samples/s eta {eta:.1}s",
                        (step - 1) / steps_per_epoch + 1,
                        self.steps.div_ceil(steps_per_epoch),
                    );
                }
            }
            Cadence::Steps { .. } => {
                let ms = self.run_train_secs * 1e3 / (step - self.run_start_step) as f64;
                // The last validation loss says at which step it was measured: between
                // evaluations it is not current.
                let last_val = log.evals.last().map_or(String::new(), |e| {
                    format!(" (val {:.4} at step {})", e.loss, e.step)
                });
                if let Some(bar) = &self.bar {
                    bar.set_position(step as u64);
                    bar.set_message(format!("loss {loss:.4}{last_val} · {ms:.1} ms/step"));
                } else if self.print_lines
                    && (step.is_multiple_of(self.line_every) || step == self.end)
                {
                    let eta = (self.end - step) as f64 * ms / 1e3;
                    println!(
                        "step {step}/{} loss {loss:.4}{last_val} {ms:.1} ms/step eta {eta:.0}s",
                        self.end
                    );
                }
            }
        }
    }

    /// Prints an evaluation (`last_loss`: the training loss of the step before it).
    pub(super) fn evaluated(&mut self, e: &EvalRecord, last_loss: Option<f32>) {
        let msg = match (self.cadence, last_loss) {
            (
                Cadence::Epochs {
                    steps_per_epoch, ..
                },
                _,
            ) => {
                // The epoch's bar is done.
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                format!(
                    "epoch {}/{}: train loss {:.4}, test loss {:.4}, test accuracy {:.2}% ({:.1}s, {:.0} samples/s)",
                    e.step.div_ceil(steps_per_epoch),
                    self.steps.div_ceil(steps_per_epoch),
                    e.train_loss,
                    e.loss,
                    e.accuracy.unwrap_or(f32::NAN) * 100.0,
                    e.seconds,
                    e.samples_per_sec()
                )
            }
            (Cadence::Steps { .. }, None) => format!("step {}: val loss {:.4}", e.step, e.loss),
            (Cadence::Steps { .. }, Some(l)) => {
                format!("step {}: train loss {l:.4}, val loss {:.4}", e.step, e.loss)
            }
        };
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => println!("{msg}"),
        }
    }

    /// Clears the bar; per step, prints the run's timing.
    pub(super) fn finish(self, step: usize) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let done = step.saturating_sub(self.run_start_step);
        if matches!(self.cadence, Cadence::Steps { .. }) && !self.quiet && done > 0 {
            println!(
                "{done} steps in {:.1}s ({:.1} ms/step training, {:.1}s with evaluation)",
                self.run_train_secs,
                self.run_train_secs * 1e3 / done as f64,
                self.run_start.elapsed().as_secs_f64()
            );
        }
    }
}
