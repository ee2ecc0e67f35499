// A result buffer handed back as XLA allocated it, unwritten. layer_scan.py starts its stacks of
// saved activations from these: each slot is overwritten by its layer before anything reads it,
// so zero-filling them first (what jax.lax.scan does) would only cost a pass over memory.

#include "xla/ffi/api/ffi.h"

namespace {

namespace ffi = xla::ffi;

ffi::Error Uninitialised(ffi::Result<ffi::AnyBuffer>, int64_t /*slot*/) {
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MobilellmUninitialised, Uninitialised,
                              ffi::Ffi::Bind().Ret<ffi::AnyBuffer>().Attr<int64_t>("slot"));
