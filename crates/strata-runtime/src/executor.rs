//! Executors: the one trait behind which a container's init process is created,
//! started, signalled and deleted. (Being written.)
