"""Extended-attribute handlers of ``FS3Operations`` (get/set/list/remove), as a mixin.

The kernel checks namespaces and permissions before these; ``FS3Operations`` supplies ``_call`` and ``_inodes``.
"""

from __future__ import annotations

import errno

import pyfuse3

_CAPS = b"security.capability"  # file capabilities: never stored (a nosuid mount ignores them)


class _XattrOps:
    """The xattr handlers, mixed into ``FS3Operations`` (whose backend and inode table they use)."""

    def _xattr_path(self, inode: int) -> str:
        return self._inodes.path(inode)

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        """One attribute's value (ENODATA if unset)."""
        if (
            name == _CAPS
        ):  # asked before every write: answer here (file capabilities need suid, and we are nosuid)
            raise pyfuse3.FUSEError(errno.ENODATA)
        return await self._call(self.backend.getxattr, self._xattr_path(inode), name)

    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        """Set one attribute (pyfuse3 checks XATTR_CREATE/XATTR_REPLACE with getxattr first)."""
        self._check_writable()
        if name == _CAPS:
            raise pyfuse3.FUSEError(errno.EPERM)
        await self._call(self.backend.setxattr, self._xattr_path(inode), name, value)

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        """Names the caller may see: ``trusted.*`` only for root, as Linux lists them."""
        names = await self._call(self.backend.listxattr, self._xattr_path(inode))
        return [n for n in names if ctx.uid == 0 or not n.startswith(b"trusted.")]

    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        """Remove one attribute (ENODATA if unset)."""
        self._check_writable()
        await self._call(self.backend.removexattr, self._xattr_path(inode), name)
