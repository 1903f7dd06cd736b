use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use ndarray::{ArrayD, IxDyn};

/// The array type every tensor holds: a dynamic-rank f32 `ndarray`.
pub type Array = ArrayD<f32>;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` in evaluation mode: operations record nothing and allocate no graph.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GRAD_ENABLED.with(|g| g.replace(false)));
    f()
}

/// Whether operations currently record a graph (false inside [`no_grad`]).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// What an operation's backward function receives.
pub struct BackwardCtx<'a> {
    /// dLoss/dOutput, shaped like the output.
    pub grad: &'a Array,
    /// The operation's output value.
    pub out: &'a Array,
    /// The operation's inputs, in the order given to [`Tensor::from_op`].
    pub inputs: &'a [Tensor],
    /// `needs[i]`: whether input `i` wants a gradient (skip the work when it does not).
    pub needs: &'a [bool],
}

type BackwardFn = Box<dyn Fn(&BackwardCtx) -> Vec<Option<Array>>>;

struct GradFn {
    name: &'static str,
    inputs: Vec<Tensor>,
    backward: BackwardFn,
}

struct Node {
    value: RefCell<Array>,
    grad: RefCell<Option<Array>>,
    requires_grad: bool,
    grad_fn: Option<GradFn>,
}

/// A node of the autograd graph: a value, and for parameters an accumulated gradient.
///
/// Cloning is cheap (a reference count) and shares the node.
#[derive(Clone)]
pub struct Tensor(Rc<Node>);

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape())
            .field("requires_grad", &self.0.requires_grad)
            .field("op", &self.0.grad_fn.as_ref().map(|g| g.name))
            .finish()
    }
}

impl Tensor {
    fn from_node(value: Array, requires_grad: bool, grad_fn: Option<GradFn>) -> Self {
        Self(Rc::new(Node {
            value: RefCell::new(value),
            grad: RefCell::new(None),
            requires_grad,
            grad_fn,
        }))
    }

    /// A constant (input data): no gradient is ever computed for it.
    pub fn new(value: Array) -> Self {
        Self::from_node(value, false, None)
    }

    /// A constant from a shape and row-major data. Panics if the lengths disagree (a programming
    /// error, not a data error).
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Self {
        Self::new(Array::from_shape_vec(IxDyn(shape), data).expect("shape matches data length"))
    }

    /// A trainable leaf: gradients accumulate in it during [`Tensor::backward`].
    pub fn param(value: Array) -> Self {
        Self::from_node(value, true, None)
    }

    /// A scalar constant.
    pub fn scalar(x: f32) -> Self {
        Self::new(Array::from_elem(IxDyn(&[]), x))
    }

    /// Records the result of an operation. Kept in the graph only when gradients are enabled and
    /// some input requires a gradient; otherwise the result is a plain constant.
    pub fn from_op(
        name: &'static str,
        value: Array,
        inputs: Vec<Tensor>,
        backward: impl Fn(&BackwardCtx) -> Vec<Option<Array>> + 'static,
    ) -> Self {
        if is_grad_enabled() && inputs.iter().any(Tensor::requires_grad) {
            let grad_fn = GradFn {
                name,
                inputs,
                backward: Box::new(backward),
            };
            Self::from_node(value, true, Some(grad_fn))
        } else {
            Self::new(value)
        }
    }

    /// The value.
    pub fn value(&self) -> Ref<'_, Array> {
        self.0.value.borrow()
    }

    /// Mutable access to the value (optimizers, loading checkpoints).
    pub fn value_mut(&self) -> RefMut<'_, Array> {
        self.0.value.borrow_mut()
    }

    /// The accumulated gradient of a parameter, if any backward pass reached it.
    pub fn grad(&self) -> Option<Ref<'_, Array>> {
        Ref::filter_map(self.0.grad.borrow(), Option::as_ref).ok()
    }

    /// Mutable access to the accumulated gradient (clipping).
    pub fn grad_mut(&self) -> RefMut<'_, Option<Array>> {
        self.0.grad.borrow_mut()
    }

    /// Forgets the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.borrow_mut() = None;
    }

    /// Whether gradients flow to (or through) this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// The shape of the value.
    pub fn shape(&self) -> Vec<usize> {
        self.0.value.borrow().shape().to_vec()
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.0.value.borrow().ndim()
    }

    /// The single element of a one-element tensor (e.g. a loss).
    pub fn item(&self) -> f32 {
        let v = self.value();
        assert_eq!(v.len(), 1, "item() on a tensor of shape {:?}", v.shape());
        *v.iter().next().expect("one element")
    }

    /// The same value, cut from the graph (a constant).
    pub fn detach(&self) -> Tensor {
        Tensor::new(self.value().clone())
    }

    /// Whether two handles are the same node.
    pub fn same(&self, other: &Tensor) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// Back-propagates from this one-element tensor: every parameter that contributed receives
    /// d(self)/d(parameter), added to any gradient it already holds.
    pub fn backward(&self) {
        assert_eq!(
            self.value().len(),
            1,
            "backward() needs a scalar, got shape {:?}",
            self.shape()
        );
        if !self.requires_grad() {
            return;
        }
        // Reverse topological order by iterative depth-first search (deterministic).
        let mut order: Vec<Tensor> = Vec::new();
        let mut seen: HashMap<*const Node, ()> = HashMap::new();
        let mut stack: Vec<(Tensor, bool)> = vec![(self.clone(), false)];
        while let Some((t, expanded)) = stack.pop() {
            let key = Rc::as_ptr(&t.0);
            if expanded {
                order.push(t);
                continue;
            }
            if seen.insert(key, ()).is_some() {
                continue;
            }
            stack.push((t.clone(), true));
            if let Some(gf) = &t.0.grad_fn {
                for input in gf.inputs.iter().rev() {
                    if input.requires_grad() && !seen.contains_key(&Rc::as_ptr(&input.0)) {
                        stack.push((input.clone(), false));
                    }
                }
            }
        }

        let mut grads: HashMap<*const Node, Array> = HashMap::new();
        grads.insert(Rc::as_ptr(&self.0), Array::ones(IxDyn(&self.shape())));
        for t in order.iter().rev() {
            let key = Rc::as_ptr(&t.0);
            let Some(g) = grads.remove(&key) else {
                continue;
            };
            match &t.0.grad_fn {
                None => accumulate(&mut t.0.grad.borrow_mut(), g),
                Some(gf) => {
                    let needs: Vec<bool> = gf.inputs.iter().map(Tensor::requires_grad).collect();
                    let out = t.0.value.borrow();
                    let ctx = BackwardCtx {
                        grad: &g,
                        out: &out,
                        inputs: &gf.inputs,
                        needs: &needs,
                    };
                    let input_grads = (gf.backward)(&ctx);
                    debug_assert_eq!(input_grads.len(), gf.inputs.len(), "op {}", gf.name);
                    for (input, ig) in gf.inputs.iter().zip(input_grads) {
                        let Some(ig) = ig else { continue };
                        if !input.requires_grad() {
                            continue;
                        }
                        debug_assert_eq!(
                            ig.shape(),
                            &input.shape()[..],
                            "grad shape of op {}",
                            gf.name
                        );
                        let slot = grads.entry(Rc::as_ptr(&input.0));
                        match slot {
                            std::collections::hash_map::Entry::Occupied(mut e) => {
                                *e.get_mut() += &ig
                            }
                            std::collections::hash_map::Entry::Vacant(e) => {
                                e.insert(ig);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn accumulate(slot: &mut Option<Array>, g: Array) {
    match slot {
        Some(acc) => *acc += &g,
        None => *slot = Some(g),
    }
}

/// Sums `g` over broadcast axes so that it has `shape` (the inverse of numpy broadcasting).
pub(crate) fn sum_to_shape(g: Array, shape: &[usize]) -> Array {
    if g.shape() == shape {
        return g;
    }
    let mut g = g;
    while g.ndim() > shape.len() {
        g = g.sum_axis(ndarray::Axis(0));
    }
    for (axis, &n) in shape.iter().enumerate() {
        if n == 1 && g.shape()[axis] != 1 {
            g = g
                .sum_axis(ndarray::Axis(axis))
                .insert_axis(ndarray::Axis(axis));
        }
    }
    g
}
