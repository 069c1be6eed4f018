"""Walking a module tree: ``parameters``, ``buffers``, ``children``, ``modules`` and
their ``named_*`` forms, under dotted names, shared members yielded once by default."""


class TraversalMethods:
    """Mixed into ``Module``; reads only its ``_parameters``, ``_buffers`` and ``_modules``."""

    def _named_members(self, get_members, prefix="", recurse=True, remove_duplicate=True):
        memo = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for module_prefix, module in modules:
            for k, v in get_members(module):
                if v is None or v in memo:
                    continue
                if remove_duplicate:
                    memo.add(v)
                yield (module_prefix + ("." if module_prefix else "") + k, v)

    def parameters(self, recurse=True):
        if type(self).named_parameters is not TraversalMethods.named_parameters:  # an override decides
            for _, param in self.named_parameters(recurse=recurse):
                yield param
            return
        # named_parameters without building the names or a generator per module (every
        # step's zero_grad and update loop walk this): the same pre-order walk as
        # named_modules, children read as lazily as it reads them.
        memo = set()
        for param in self._parameters.values():
            if param is not None and param not in memo:
                memo.add(param)
                yield param
        if not recurse:
            return
        seen = {self}
        stack = [iter(self._modules.values())]
        while stack:
            for module in stack[-1]:
                if module is None or module in seen:
                    continue
                seen.add(module)
                for param in module._parameters.values():
                    if param is not None and param not in memo:
                        memo.add(param)
                        yield param
                if module._modules:
                    stack.append(iter(module._modules.values()))
                    break
            else:
                stack.pop()

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members(lambda m: m._parameters.items(), prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members(lambda m: m._buffers.items(), prefix, recurse, remove_duplicate)

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_children(self):
        memo = set()
        for name, module in self._modules.items():
            if module is not None and module not in memo:
                memo.add(module)
                yield name, module

    def modules(self, remove_duplicate=True):
        for _, module in self.named_modules(remove_duplicate=remove_duplicate):
            yield module

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        if memo is None:
            memo = set()
        if self in memo:
            return
        if remove_duplicate:
            memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, prefix + ("." if prefix else "") + name,
                                                remove_duplicate)
