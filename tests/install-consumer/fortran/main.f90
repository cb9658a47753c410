! A Fortran program on the installed rfaas.h through bind(C): leases a core through the broker
! ($RFAAS_BROKER), deploys the installed echo function ($RFAAS_FUNCTIONS), invokes it on an
! array of doubles, gives the lease back.
module rfaas_c
  use iso_c_binding
  implicit none
  integer(c_int), parameter :: RFAAS_OK = 0

  type, bind(C) :: rfaas_lease_options
    integer(c_int32_t) :: cores
    integer(c_int64_t) :: memory_bytes
    integer(c_int64_t) :: duration_ms
    type(c_ptr) :: avoid_nodes
    integer(c_int64_t) :: timeout_ms
  end type

  type, bind(C) :: rfaas_deploy_options
    type(c_ptr) :: library_path
    type(c_ptr) :: functions
    integer(c_int32_t) :: workers
    integer(c_int32_t) :: slots
    integer(c_int64_t) :: input_capacity
    integer(c_int64_t) :: output_capacity
    integer(c_int64_t) :: hot_timeout_us
    integer(c_int64_t) :: invocation_timeout_ms
    integer(c_int32_t) :: queue_depth
    type(c_ptr) :: dependencies
  end type

  interface
    subroutine rfaas_lease_options_init(o) bind(C)
      import :: rfaas_lease_options
      type(rfaas_lease_options), intent(out) :: o
    end subroutine
    subroutine rfaas_deploy_options_init(o) bind(C)
      import :: rfaas_deploy_options
      type(rfaas_deploy_options), intent(out) :: o
    end subroutine
    integer(c_int) function rfaas_lease_broker(broker, o, lease) bind(C)
      import :: c_int, c_ptr, rfaas_lease_options
      type(c_ptr), value :: broker
      type(rfaas_lease_options), intent(in) :: o
      type(c_ptr), intent(out) :: lease
    end function
    integer(c_int) function rfaas_deploy(lease, o, executor) bind(C)
      import :: c_int, c_ptr, rfaas_deploy_options
      type(c_ptr), value :: lease
      type(rfaas_deploy_options), intent(in) :: o
      type(c_ptr), intent(out) :: executor
    end function
    integer(c_int) function rfaas_function(executor, name) bind(C)
      import :: c_int, c_ptr, c_char
      type(c_ptr), value :: executor
      character(kind=c_char), intent(in) :: name(*)
    end function
    integer(c_int) function rfaas_invoke(executor, fn, in, in_size, out, out_capacity, out_size) bind(C)
      import :: c_int, c_ptr, c_size_t, c_double
      type(c_ptr), value :: executor
      integer(c_int), value :: fn
      real(c_double), intent(in) :: in(*)
      integer(c_size_t), value :: in_size
      real(c_double), intent(out) :: out(*)
      integer(c_size_t), value :: out_capacity
      integer(c_size_t), intent(out) :: out_size
    end function
    integer(c_int) function rfaas_release(executor, usage) bind(C)
      import :: c_int, c_ptr
      type(c_ptr), value :: executor, usage
    end function
    subroutine rfaas_executor_free(executor) bind(C)
      import :: c_ptr
      type(c_ptr), value :: executor
    end subroutine
    integer(c_int) function rfaas_lease_release(lease) bind(C)
      import :: c_int, c_ptr
      type(c_ptr), value :: lease
    end function
    subroutine rfaas_lease_free(lease) bind(C)
      import :: c_ptr
      type(c_ptr), value :: lease
    end subroutine
    type(c_ptr) function rfaas_last_error() bind(C)
      import :: c_ptr
    end function
    integer(c_size_t) function strlen(s) bind(C)
      import :: c_size_t, c_ptr
      type(c_ptr), value :: s
    end function
  end interface

contains

  ! The thread's last rfaas error message as a Fortran string.
  function last_error() result(text)
    character(len=:), allocatable :: text
    character(kind=c_char), pointer :: chars(:)
    type(c_ptr) :: p
    integer :: i, n
    p = rfaas_last_error()
    n = int(strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate(character(len=n) :: text)
    do i = 1, n
      text(i:i) = chars(i)
    end do
  end function
end module

program consumer_fortran
  use rfaas_c
  implicit none
  type(rfaas_lease_options) :: lo
  type(rfaas_deploy_options) :: o
  type(c_ptr) :: lease, ex
  character(len=4096) :: folder
  character(len=4200, kind=c_char), target :: library
  character(len=8, kind=c_char), target :: names
  real(c_double) :: x(16), y(16)
  integer(c_size_t) :: n
  integer(c_int) :: rc, echo
  integer :: i

  call get_environment_variable("RFAAS_FUNCTIONS", folder)
  library = trim(folder) // "/librfaas_functions_basic.so" // c_null_char
  names = "echo" // c_null_char

  call rfaas_lease_options_init(lo)
  lo%memory_bytes = 64_c_int64_t * 1024 * 1024
  rc = rfaas_lease_broker(c_null_ptr, lo, lease)
  if (rc /= RFAAS_OK) then
    print *, "consumer_fortran: rfaas_lease_broker: ", last_error()
    error stop 1
  end if
  call rfaas_deploy_options_init(o)
  o%library_path = c_loc(library)
  o%functions = c_loc(names)
  o%input_capacity = 4096
  o%output_capacity = 4096
  rc = rfaas_deploy(lease, o, ex)
  if (rc /= RFAAS_OK) then
    print *, "consumer_fortran: rfaas_deploy: ", last_error()
    rc = rfaas_lease_release(lease)  ! a failed deploy: give the cores back
    error stop 1
  end if
  echo = rfaas_function(ex, "echo" // c_null_char)
  x = [(real(i, c_double) / 4, i = 1, 16)]
  y = 0
  rc = rfaas_invoke(ex, echo, x, int(8 * size(x), c_size_t), y, int(8 * size(y), c_size_t), n)
  print '(a, i0, a, f6.2)', "consumer_fortran: echo of 16 doubles: ", n, " bytes back, sum ", sum(y)
  if (rc /= RFAAS_OK .or. n /= 8 * size(x) .or. any(x /= y)) error stop 1
  rc = rfaas_release(ex, c_null_ptr)
  call rfaas_executor_free(ex)
  rc = rfaas_lease_release(lease)
  call rfaas_lease_free(lease)
end program
