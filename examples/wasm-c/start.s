# wasi_thread_start(tid, start_arg): every guest thread but the main enters
# here. Before any C runs it needs a stack: thread `start_arg` gets the top
# of its own slot of `stacks` (pi.c), then runs thread_main(tid, start_arg).
	.globaltype __stack_pointer, i32
	.functype thread_main (i32, i32) -> ()
	.globl wasi_thread_start
	.export_name wasi_thread_start, wasi_thread_start
	.type wasi_thread_start,@function
wasi_thread_start:
	.functype wasi_thread_start (i32, i32) -> ()
	local.get 1
	i32.const 1
	i32.add
	i32.const 65536
	i32.mul
	i32.const stacks
	i32.add
	global.set __stack_pointer
	local.get 0
	local.get 1
	call thread_main
	end_function
