module goguest

go 1.21
