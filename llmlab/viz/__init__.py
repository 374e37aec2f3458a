"""Pictures and widgets, one module per chapter (tokens, embeddings, attention, positional,
training, sampling). Every interactive widget has a static matplotlib fallback, so a
notebook still shows something under nbval, in a PDF export and on the course website."""


def show_in(out, fig) -> None:
    """Replace what an `ipywidgets.Output` shows with `fig`, and close the figure.

    Sets the widget's `outputs` directly rather than `with out: display(fig)`: the context
    manager relies on the front end routing messages into the widget, which nbval and other
    headless runners do not do (the figure would spill into the cell's own output), while the
    `outputs` state reaches every front end the same way."""
    import matplotlib.pyplot as plt
    from IPython.core.interactiveshell import InteractiveShell

    data, metadata = InteractiveShell.instance().display_formatter.format(fig)
    out.outputs = ({"output_type": "display_data", "data": data, "metadata": metadata},)
    plt.close(fig)
