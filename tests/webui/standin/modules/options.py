"""Mirrors modules/options.py (v1.10.1): OptionInfo and the Options lookup (data first, then the
label's default; add_option). Left out: the freeze/restriction checks of __setattr__, save/load."""


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before='', comment_after='', infotext=None, restrict_api=False,
                 category_id=None):
        self.default, self.label, self.component, self.component_args = default, label, component, component_args
        self.onchange, self.section, self.category_id, self.refresh = onchange, section, category_id, refresh
        self.do_not_save = False
        self.comment_before, self.comment_after = comment_before, comment_after
        self.infotext, self.restrict_api = infotext, restrict_api

    def info(self, info):
        self.comment_after += f"<span class='info'>({info})</span>"
        return self


BUILTIN = {"data_labels", "data", "restricted_opts", "typemap"}


class Options:
    typemap = {int: float}

    def __init__(self, data_labels, restricted_opts=()):
        self.data_labels = data_labels
        self.data = {k: v.default for k, v in data_labels.items() if not v.do_not_save}
        self.restricted_opts = set(restricted_opts)

    def __setattr__(self, key, value):
        if key in BUILTIN:
            return super().__setattr__(key, value)
        if key in self.data or key in self.data_labels:
            if not self.data_labels[key].do_not_save:
                self.data[key] = value
            return
        return super().__setattr__(key, value)

    def __getattr__(self, item):
        if item in BUILTIN:
            return super().__getattribute__(item)
        if item in self.data:
            return self.data[item]
        if item in self.data_labels:
            return self.data_labels[item].default
        return super().__getattribute__(item)

    def add_option(self, key, info):
        self.data_labels[key] = info
        if key not in self.data and not info.do_not_save:
            self.data[key] = info.default
