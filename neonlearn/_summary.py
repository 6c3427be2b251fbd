"""Layer tables of configured models: ``summary`` (text) and ``summary_html``.

One row per leaf layer, indented under its compound layer (``Affine``, ``Conv``,
``LSTM`` stacks, containers): name, type, output shape (batch axis first, as
``(None, ...)``), number of parameters, marked ``(frozen)`` for a layer with
``trainable=False``; then the total, and the trainable and frozen counts.
Parameters are the arrays that the optimizer updates (weights, biases, batch-norm
scale and shift); BatchNorm's running statistics are not counted.
"""
import html

from .layers._base import CompoundLayer

__all__ = ["layer_table", "parameter_counts", "summary", "summary_html"]


def _n_params(layer):
    return sum(int(p.size) for p, _ in layer.param_grads())


def _frozen(layer):
    return getattr(layer, "trainable", True) is False


def _params_cell(layer, n):
    """The Params cell: the count, marked when every parameter under ``layer`` is
    frozen."""
    text = "{:,}".format(n)
    frozen = n and all(_frozen(leaf) for leaf in layer.sublayers() if _n_params(leaf))
    return text + " (frozen)" if frozen else text


def _shape(layer):
    shape = getattr(layer, "out_shape", None)
    if shape is None:
        return "?"
    return "(None, %s)" % ", ".join(str(int(s)) for s in shape)


def _children(layer):
    if isinstance(layer, CompoundLayer):
        return list(layer.__dict__.get("layers_", []))
    return []


def _model(obj):
    """The Model of a fitted estimator, or ``obj`` itself."""
    if hasattr(obj, "model_"):
        return obj.model_
    if hasattr(obj, "get_params") and hasattr(obj, "fit"):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError("This %s instance is not fitted yet: call fit before "
                             "summary()." % type(obj).__name__)
    return obj


def layer_table(model):
    """Rows ``(depth, name, type, output shape, n_params)`` of a configured model.

    Parameters
    ----------
    model : Model, Layer or fitted estimator
        A configured :class:`~neonlearn.models.Model` (``est.model_``), a configured
        layer, or a fitted estimator.

    Returns
    -------
    rows : list of tuple
        Compound layers come first with the sum of their parts' parameters, followed
        by their parts one level deeper.
    """
    return [(depth, layer.name or type(layer).__name__, type(layer).__name__,
             _shape(layer), n) for depth, layer, n in _layer_rows(model)]


def _layer_rows(model):
    """``(depth, layer, n_params)`` in table order."""
    root = _root(model)
    rows = []

    def visit(layer, depth):
        kids = _children(layer)
        if kids:
            n = sum(_n_params(leaf) for leaf in layer.sublayers())
        else:
            n = _n_params(layer)
        rows.append((depth, layer, n))
        for kid in kids:
            visit(kid, depth + 1)

    top = _children(root) if type(root).__name__ == "Sequential" else [root]
    for layer in top:
        visit(layer, 0)
    return rows


def _count_lines(model):
    """The trainable and frozen counts, then the total."""
    total, trainable, frozen = parameter_counts(model)
    return [("Trainable params", trainable), ("Frozen params", frozen),
            ("Total params", total)]


def _root(model):
    from .models import Model

    m = _model(model)
    return m.layers if isinstance(m, Model) else m


def parameter_counts(model):
    """``(total, trainable, frozen)`` numbers of parameters of a configured model
    (a leaf is frozen when its ``trainable`` is False)."""
    leaves = _root(model).sublayers()
    frozen = sum(_n_params(leaf) for leaf in leaves if _frozen(leaf))
    total = sum(_n_params(leaf) for leaf in leaves)
    return total, total - frozen, frozen


def summary(model, title=None):
    """The layer table of a configured model as text.

    Parameters
    ----------
    model : Model, Layer or fitted estimator
        A configured model, e.g. a fitted estimator's ``model_``.
    title : str or None
        First line of the table.

    Returns
    -------
    text : str
    """
    header = ("Layer (name)", "Type", "Output shape", "Params")
    cells = [("  " * d + (layer.name or type(layer).__name__), type(layer).__name__,
              _shape(layer), _params_cell(layer, n)) for d, layer, n in _layer_rows(model)]
    widths = [max(len(r[i]) for r in cells + [header]) for i in range(4)]
    fmt = "%-{}s  %-{}s  %-{}s  %{}s".format(*widths)
    rule = "-" * (sum(widths) + 6)
    lines = [title] if title else []
    lines += [rule, fmt % header, rule.replace("-", "=")]
    lines += [fmt % r for r in cells]
    lines += [rule] + ["{}: {:,}".format(what, n) for what, n in _count_lines(model)]
    in_shape = getattr(_model(model), "in_shape", None)
    if isinstance(in_shape, dict):  # named inputs: one line each
        lines += ["Input %r: (None, %s)" % (name, ", ".join(str(int(s)) for s in shape))
                  for name, shape in in_shape.items()]
    elif in_shape is not None:
        lines.append("Input shape: (None, %s)" % ", ".join(str(int(s)) for s in in_shape))
    return "\n".join(lines)


def summary_html(model, title=None):
    """The layer table as an HTML ``<table>`` (for ``_repr_html_`` in notebooks)."""
    out = ["<table>"]
    if title:
        out.append("<caption>%s</caption>" % html.escape(title))
    out.append("<tr><th>Layer (name)</th><th>Type</th><th>Output shape</th>"
               "<th>Params</th></tr>")
    for d, layer, n in _layer_rows(model):
        out.append('<tr><td style="text-align:left;padding-left:%dem">%s</td><td>%s</td>'
                   "<td>%s</td><td>%s</td></tr>"
                   % (1 + 2 * d, html.escape(layer.name or type(layer).__name__),
                      html.escape(type(layer).__name__), html.escape(_shape(layer)),
                      _params_cell(layer, n)))
    for what, n in _count_lines(model):
        out.append('<tr><td colspan="3"><b>%s</b></td><td><b>{:,}</b></td></tr>'.format(n)
                   % what)
    out.append("</table>")
    return "\n".join(out)
