// One list per kernel contract. Each contract header (kernels/<op>.h) writes its kernels' names
// and parameter lists once, as an X-macro:
//   #define KD_POOL_KERNELS(X) X(avg_pool2d_forward, (const PoolGeom& g, const T* x, T* y)) ...
// and everything else is generated from that list:
//   KD_DECLARE_KERNELS(LIST)       declarations, in each implementing namespace (ref, cpu, cuda)
//   KD_TABLE_ENTRIES(LIST)         the function-pointer members of KernelTable<T> (backend.h)
//   KD_DEFINE_REGISTRAR(fn, LIST)  at the end of an implementation file: a function that puts
//                                  this namespace's kernels into a KernelTable<T>, explicitly
//                                  instantiated for float and double, which also instantiates
//                                  the kernels themselves (no hand-written instantiation lists).
// Every kernel is a template on the element type T and returns void: results go to pointers
// (a loss writes its value to a T*, on every device alike).
#pragma once

#define KD_DECLARE_KERNEL_(name, params) \
  template <class T>                     \
  void name params;
#define KD_DECLARE_KERNELS(LIST) LIST(KD_DECLARE_KERNEL_)

#define KD_TABLE_ENTRY_(name, params) void(*name) params = nullptr;
#define KD_TABLE_ENTRIES(LIST) LIST(KD_TABLE_ENTRY_)

#define KD_REGISTER_KERNEL_(name, params) table.name = &name<T>;
#define KD_DEFINE_REGISTRAR(fn, LIST)                         \
  template <class T>                                          \
  void fn(::kd::KernelTable<T>& table) {                      \
    LIST(KD_REGISTER_KERNEL_)                                 \
  }                                                           \
  template void fn<float>(::kd::KernelTable<float>& table);   \
  template void fn<double>(::kd::KernelTable<double>& table);
